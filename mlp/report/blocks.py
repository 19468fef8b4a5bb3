"""The report as data: a page is a list of typed blocks, built once from ReportData by the
sections and written twice (HTML and Markdown) by `page`. In any text, `backticks` mark code
and `[text](#anchor)` links inside the page.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

__all__ = ["Heading", "Paragraph", "Bullets", "Table", "Figure", "Block"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1                 # 1: the page title; 2: a section (has an anchor)
    anchor: str | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list = field(default_factory=list)


@dataclass(frozen=True)
class Table:
    header: list
    rows: list                     # lists of cells (str or numbers), one per row


@dataclass(frozen=True)
class Figure:
    """A registered figure (by name). caption=None takes the caption from the figure registry.
    A figure that was not drawn (it does not apply to this sweep) is left out of the page."""
    name: str
    caption: str | None = None


Block = Union[Heading, Paragraph, Bullets, Table, Figure]
