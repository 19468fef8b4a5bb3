"""The README and docs/ say what the code does: the flag tables are the schema's own text, the
README stays a short entry point (under 350 lines; the notebooks are in docs/), and every link
between them reaches a file and a heading that exist."""
import re

import pytest

from mlp.cli.flags import flag_table
from helpers.paths import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("group", ["assignment", "beyond"])
def test_the_readme_flag_tables_are_generated_from_the_schema(group):
    text = README.read_text()
    match = re.search(rf"<!-- flags:{group} -->\n(.*?)\n<!-- /flags:{group} -->", text, flags=re.S)
    assert match, f"README has no flags:{group} table"
    expected = flag_table(group)
    assert match.group(1) == expected, f"README's flags:{group} table is stale; it should read:\n{expected}"


def test_the_readme_is_a_short_entry_point():
    assert len(README.read_text().splitlines()) < 350


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_reach_files_and_headings_that_exist(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"^#+ (.*)$", file.read_text(), flags=re.M)}
            if anchor not in headings:
                broken.append(target)
    assert broken == []
