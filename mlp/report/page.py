"""The report as a document: `build_blocks` assembles the typed blocks (mlp.report.blocks) of
every registered section in page order, with the table of contents and section numbers from
`registry.SECTIONS`; the writers turn them into `index.html` (self-contained: PNGs embedded as
base64 data URIs, inline CSS, opens from disk) and `report.md` (references the PNG files next to
it), each dispatching on the block's type.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from mlp.report import sections as S
from mlp.report.blocks import Block, Bullets, Figure, Heading, Paragraph, Table
from mlp.report import registry

__all__ = ["build_blocks", "write_html", "write_markdown"]


def _section_blocks(anchor: str, blocks: list, data) -> list:
    """The section's blocks with every figure captioned from the registry, and the section's
    registered figures it did not place appended at its end; figures of another task than the
    sweep's are left out."""
    out, placed = [], set()
    for block in blocks:
        if isinstance(block, Figure):
            fig = registry.FIGURES.get(block.name)
            if fig is None or fig.section != anchor:
                raise ValueError(f"section {anchor!r} places figure {block.name!r}, which is not registered for it")
            placed.add(block.name)
            if not fig.applies(data.task):
                continue
            if block.caption is None:
                block = Figure(block.name, registry.caption_of(block.name, data))
        out.append(block)
    out += [Figure(f.name, registry.caption_of(f.name, data)) for f in registry.FIGURES.values()
            if f.section == anchor and f.name not in placed and f.applies(data.task)]
    return out


def build_blocks(data) -> list[Block]:
    """The whole page: title, intro, table of contents, then each section under its numbered heading."""
    s = data.sweep
    titles = registry.numbered_titles(data)
    blocks: list[Block] = [Heading(f"Sweep report: {s['name'] or s['id']} ({s['id']})", 1), *S.intro(data),
                           Bullets([f"[{title}](#{anchor})" for anchor, title in titles.items()])]
    for anchor, section in registry.SECTIONS.items():
        blocks.append(Heading(titles[anchor], 2, anchor))
        blocks += _section_blocks(anchor, section.build(data), data)
    return blocks


# ---- writers ---------------------------------------------------------------------------------------

_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(#([\w-]+)\)")


def _inline_html(text) -> str:
    out = html.escape(str(text))
    out = _CODE.sub(lambda mt: f"<code>{mt.group(1)}</code>", out)
    return _LINK.sub(lambda mt: f'<a href="#{mt.group(2)}">{mt.group(1)}</a>', out)


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.92em;margin-top:.3em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
"""

# Records each image's decoded width on the element, so a headless browser's DOM dump shows
# whether every figure rendered (tests read data-natural-width).
SCRIPT = """
(function(){
  function mark(img){ img.setAttribute('data-natural-width', String(img.naturalWidth)); }
  document.querySelectorAll('img').forEach(function(img){
    if (img.complete) { mark(img); }
    img.addEventListener('load', function(){ mark(img); });
    img.addEventListener('error', function(){ mark(img); });
  });
})();
"""


def _html_figure(block: Figure, figures: dict) -> str:
    if block.name not in figures:
        return ""
    encoded = base64.b64encode(Path(figures[block.name]).read_bytes()).decode("ascii")
    return (f'<figure id="fig-{block.name}"><img src="data:image/png;base64,{encoded}" '
            f'alt="{html.escape(block.name)}"><figcaption>{_inline_html(block.caption or "")}</figcaption></figure>')


def _html_heading(block: Heading, figures: dict) -> str:
    anchor = f' id="{block.anchor}"' if block.anchor else ""
    return f"<h{block.level}{anchor}>{_inline_html(block.text)}</h{block.level}>"


def _html_table(block: Table, figures: dict) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in block.header)
    body = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


HTML = {  # block type -> (block, figures) -> HTML
    Heading: _html_heading,
    Paragraph: lambda b, figures: f"<p>{_inline_html(b.text)}</p>",
    Bullets: lambda b, figures: "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>",
    Table: _html_table,
    Figure: _html_figure,
}


def write_html(blocks, figures: dict, path) -> Path:
    title = next((b.text for b in blocks if isinstance(b, Heading) and b.level == 1), "Sweep report")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    parts += [part for part in (HTML[type(b)](b, figures) for b in blocks) if part]
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path = Path(path)
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _md_heading(block: Heading, figures: dict) -> list:
    anchor = [f'<a id="{block.anchor}"></a>', ""] if block.anchor else []
    return anchor + ["#" * block.level + " " + block.text, ""]


def _md_table(block: Table, figures: dict) -> list:
    return (["| " + " | ".join(_md_cell(h) for h in block.header) + " |",
             "|" + "|".join("---" for _ in block.header) + "|"]
            + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows] + [""])


def _md_figure(block: Figure, figures: dict) -> list:
    if block.name not in figures:
        return []
    return [f"![{block.name}]({Path(figures[block.name]).name})", "", f"*{block.caption or ''}*", ""]


MARKDOWN = {  # block type -> (block, figures) -> lines
    Heading: _md_heading,
    Paragraph: lambda b, figures: [str(b.text), ""],
    Bullets: lambda b, figures: [f"- {item}" for item in b.items] + [""],
    Table: _md_table,
    Figure: _md_figure,
}


def write_markdown(blocks, figures: dict, path) -> Path:
    lines = [line for b in blocks for line in MARKDOWN[type(b)](b, figures)]
    path = Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
