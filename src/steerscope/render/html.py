"""A small self-contained HTML page: tables and embedded PNG figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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


def code_block(text: str) -> str:
    """Commands to copy, preformatted."""
    return f"<pre><code>{html.escape(text)}</code></pre>"


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """sections: (heading, HTML body) pairs."""
    parts = "".join(f"<section><h2>{html.escape(h)}</h2>{body}</section>" for h, body in sections)
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
