"""MkDocs hooks: the reference pages that a tool can write are generated from the code at build time.

A page asks for a generated part with a marker on a line of its own:
    <!-- generated: cli -->            every `steerscope` command, its arguments and options (from the Typer app)
    <!-- generated: architectures -->  the model types and how each is wired (from core.adapters)
    <!-- generated: modules -->        every module of the package with the first line of its docstring
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "steerscope"
MARKER = re.compile(r"^<!-- generated: (\w+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_rows(command) -> list[str]:
    """One table row per argument or option of a click command (typer's own click: read by duck typing)."""
    rows = []
    for param in command.params:
        if param.name == "help":
            continue
        if param.param_type_name == "argument":
            name = f"`{param.name.upper()}`"
        else:
            name = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        help_text = getattr(param, "help", "") or ""
        default = param.default
        shown = "" if default is None or callable(default) or param.required else f"`{default}`"
        rows.append(f"| {name} | {_cell(help_text)} | {shown} |")
    return rows


def cli_reference() -> str:
    """Every command of the Typer app as a heading, its help and a table of its parameters."""
    import typer.main

    from steerscope.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []

    def walk(command, path: list[str]) -> None:
        if hasattr(command, "commands"):
            for name in sorted(command.commands):
                walk(command.commands[name], [*path, name])
            return
        title = " ".join(path)
        out.append(f"### `{title}`\n")
        out.append(_cell(command.help or "").strip() + "\n")
        rows = _option_rows(command)
        if rows:
            out.append("| argument / option | what | default |\n|---|---|---|")
            out.extend(rows)
        out.append("")

    walk(root, ["steerscope"])
    return "\n".join(out)


def architectures() -> str:
    from steerscope.core.adapters import ADAPTERS

    rows = ["| `config.model_type` | family | wiring | blocks | final norm |", "|---|---|---|---|---|"]
    for model_type, a in ADAPTERS.items():
        wiring = "parallel residual" if a.parallel else "sequential"
        if a.sandwich:
            wiring += ", sandwich norms"
        rows.append(f"| `{model_type}` | {a.family} | {wiring} | `{a.layers}` | `{a.final_norm}` |")
    return "\n".join(rows)


def modules() -> str:
    rows = ["| module | what it holds |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts)
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first = doc.strip().split("\n\n")[0] if doc else ""
        rows.append(f"| `{name}` | {_cell(first)} |")
    return "\n".join(rows)


GENERATORS = {"cli": cli_reference, "architectures": architectures, "modules": modules}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def fill(match: re.Match) -> str:
        kind = match.group(1)
        if kind not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated part {kind!r}; use one of {sorted(GENERATORS)}")
        return GENERATORS[kind]()

    return MARKER.sub(fill, markdown)
