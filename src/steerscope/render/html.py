"""A small self-contained HTML page: tables and embedded PNG figures.

Every piece of text reaches a page through these helpers, which escape it: `paragraph`, `code`, `bold`,
`table`, `code_block`, `image` and `page` return `Html` (markup made here from escaped text), and a plain
`str` handed to `paragraph`, `join` or as a `page` section body is escaped, never inserted as markup. So a
model name, file path, dataset name, prompt or completion holding `<script>` or `onerror=` shows as text.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path


class Html(str):
    """Markup safe to put in a page as it is: made by the helpers below from escaped text."""


def _safe(part) -> str:
    """A part of a page: Html as it is, anything else (a str, a number) escaped as text."""
    return part if isinstance(part, Html) else html.escape(fmt(part))


def join(*parts) -> Html:
    """Parts side by side: Html kept, plain text escaped."""
    return Html("".join(_safe(p) for p in parts))


def paragraph(*parts) -> Html:
    """One <p>: plain strings are escaped text; `code(...)`, `bold(...)` and other Html are kept."""
    return Html(f"<p>{join(*parts)}</p>")


def code(text) -> Html:
    """Inline code (a site, a path, a metric name), escaped."""
    return Html(f"<code>{_safe(text)}</code>")


def bold(text) -> Html:
    return Html(f"<b>{_safe(text)}</b>")


def table(rows: list[dict], columns: list[str] | None = None) -> Html:
    if not rows:
        return paragraph("(no rows)")
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(value) -> str:
    text = html.escape(fmt(value))
    return f'<td class="t">{text}</td>' if isinstance(value, str) else f"<td>{text}</td>"


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def escape(text: str) -> str:
    return html.escape(text)


def code_block(text: str) -> Html:
    """Commands to copy, preformatted."""
    return Html(f"<pre><code>{html.escape(text)}</code></pre>")


def image(path: Path, alt: str) -> Html:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return Html(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """sections: (heading, body) pairs; a body is Html from these helpers (a plain str is shown as text)."""
    parts = "".join(f"<section><h2>{html.escape(str(h))}</h2>{_body(body)}</section>" for h, body in sections)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:right;vertical-align:top}td.t{text-align:left;max-width:460px}th{background:#f3f3f3}"
        "pre{background:#f3f3f3;padding:.6em;overflow-x:auto;white-space:pre-wrap}img{max-width:100%}code{background:#f3f3f3}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{parts}</body></html>"
    )


def _body(body) -> str:
    return body if isinstance(body, Html) else paragraph(body)
