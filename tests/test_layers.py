"""The import direction of the layers (README, "Where the code lives"): data flows down, nothing imports upward,
no experiment imports another.

Every import statement in the package is read with `ast` (imports inside functions too, so a lazy import
cannot hide an upward edge) and resolved to the top-level part of steerscope it reaches.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "steerscope"

#: part of the package -> its layer; a part may import only parts of a strictly lower layer (or itself)
LAYERS = {
    "_version": 0,
    "render": 0,
    "core": 1,
    "evaluate": 2,
    "steering": 3,
    "sae": 4,
    "vllm": 4,  # the vLLM engine: steering vectors (steering/) served inside vLLM's batches
    "methods": 5,
    "depth": 6,
    "refusal": 6,
    "maze": 6,
    "sweep": 6,
    "demo": 7,
    "serve": 8,  # the browser playground: beside the CLI at the top; only `steerscope serve` (cli) starts it
    "inspect_provider": 8,  # the Inspect AI model provider: loaded by Inspect through its entry point, beside serve
    "cli": 9,
}
#: parts that import nothing of ours at all
LEAVES = {"_version", "render"}


def _part(module: str) -> str:
    """'steerscope.sae.steer' -> 'sae'; the root package itself -> '__init__'."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every steerscope import in a file."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "steerscope"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "steerscope":
                continue
            if node.module is None or target.count(".") == 0:
                # `from . import figures` / `from .. import x`: each name may be a submodule
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        own = _part(_module_name(path, root))
        if own == "__init__":
            continue  # the public facade re-exports from every layer
        if own not in LAYERS:
            out.append(f"{path.relative_to(root)}: '{own}' has no layer in tests/test_layers.py LAYERS")
            continue
        for line, target in imports_of(path, root):
            other = _part(target)
            where = f"{path.relative_to(root)}:{line} imports {target}"
            if other == own:
                continue
            if own in LEAVES:
                out.append(f"{where}: {own} must import nothing of steerscope")
            elif other == "__init__" or other not in LAYERS:
                out.append(f"{where}: import the defining module, not the package root")
            elif LAYERS[other] == LAYERS[own]:
                out.append(f"{where}: {own} and {other} are on one layer and must not import each other")
            elif LAYERS[other] > LAYERS[own]:
                out.append(f"{where}: {own} (layer {LAYERS[own]}) imports upward into {other} (layer {LAYERS[other]})")
    return out


def test_no_import_runs_up_a_layer_or_between_experiments():
    assert violations() == []


def test_every_part_of_the_package_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    parts -= {"__init__", "__pycache__", "data", "static"}
    assert parts <= set(LAYERS), f"give these a layer: {sorted(parts - set(LAYERS))}"


@pytest.mark.parametrize(
    ("source", "module", "message"),
    [
        ("from ..sweep.runner import run_sweep\n", "depth/fake.py", "one layer"),
        ("from ..sae.steer import sae_clamp\n", "steering/fake.py", "imports upward"),
        ("def f():\n    from ..cli import app\n", "core/fake.py", "imports upward"),
        ("from .. import __version__\n", "steering/fake.py", "package root"),
        ("from ..core.io import write_json\n", "render/fake.py", "import nothing"),
    ],
)
def test_the_checker_catches_each_kind_of_bad_import(tmp_path, source, module, message):
    """The checker itself, on planted files: an import between experiments, upward, lazy, via the root, from a leaf."""
    fake = tmp_path / "steerscope"
    for part in ("core", "steering", "depth", "render", "sweep", "sae", "cli"):
        (fake / part).mkdir(parents=True)
        (fake / part / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / module).write_text(source)
    found = violations(fake)
    assert len(found) == 1 and message in found[0], found


def import_cycles(root: Path = PACKAGE) -> list[list[str]]:
    """Groups of modules that import each other round a circle (imports inside functions count: a lazy import hides
    a circle, it does not cut it). Package __init__ files are left out: they re-export their own modules."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        name = _module_name(path, root)
        graph[name] = set()
        for _, target in imports_of(path, root):
            graph[name].add(target)
    for name in graph:  # `from .pkg import mod` names the module; `from .mod import f` names the module too
        graph[name] = {t if t in graph else t.rsplit(".", 1)[0] for t in graph[name]} & set(graph)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circles():
    assert import_cycles() == []


def test_the_circle_finder_finds_a_lazy_circle(tmp_path):
    fake = tmp_path / "steerscope"
    (fake / "core").mkdir(parents=True)
    for init in (fake / "__init__.py", fake / "core" / "__init__.py"):
        init.write_text("")
    (fake / "core" / "a.py").write_text("from .b import g\n")
    (fake / "core" / "b.py").write_text("def g():\n    from .a import f\n")
    (fake / "core" / "c.py").write_text("from .a import f\n")
    assert import_cycles(fake) == [["steerscope.core.a", "steerscope.core.b"]]
