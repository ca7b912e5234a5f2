"""HTML pieces of the report page (a04_report and its sections): escaping and small blocks.

    from a04_html import Html, fill, html_table, note
    fill(Template("<p>$name</p>"), name="<b>")   # '<p>&lt;b&gt;</p>'

Text goes into the page escaped; Html marks what a report module built already, which fill
puts into a template as it is.
"""
from __future__ import annotations

import html
from pathlib import Path
from string import Template

from a00_common import data_dir


class Html(str):
    """HTML a report module built: fill puts it into a template as it is."""


def fill(template: Template, **values) -> str:
    """The template with its placeholders filled: text is escaped, Html goes in as it is."""
    return template.substitute({name: value if isinstance(value, Html) else escaped(value)
                                for name, value in values.items()})


def escaped(value) -> str:
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    return f'<p class="note">{escaped(text)}</p>'


def scroll(table_html: str) -> str:
    """A wide table in a box that scrolls sideways on a narrow page."""
    return f'<div class="scroll">{table_html}</div>'


def missing(message: str) -> str:
    return f'<p class="missing">{escaped(message)}</p>'


def html_table(header: list[str], rows: list[list], numeric: set[int] = frozenset(),
               row_classes: list[str] | None = None, escape: bool = True,
               header_escaped: bool = False, table_class: str = "") -> str:
    """An HTML table; cells are escaped unless the caller built them as HTML already."""
    def cell(tag: str, index: int, value, already_html: bool) -> str:
        content = str(value) if already_html else escaped(value)
        css = ' class="number"' if index in numeric else ""
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", i, h, header_escaped) for i, h in enumerate(header))
    lines = []
    for row_index, row in enumerate(rows):
        css = row_classes[row_index] if row_classes else ""
        attribute = f' class="{css}"' if css else ""
        cells = "".join(cell("td", i, v, not escape) for i, v in enumerate(row))
        lines.append(f"<tr{attribute}>{cells}</tr>")
    opening = f'<table class="{table_class}">' if table_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def key_value_table(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{escaped(key)}</th><td>{escaped(value)}</td></tr>"
                   for key, value in facts)
    return f"<table>{rows}</table>"


def relative_path(path: Path) -> str:
    try:
        return Path(path).relative_to(data_dir()).as_posix()
    except ValueError:
        return str(path)
