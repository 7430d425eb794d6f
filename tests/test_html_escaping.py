"""Issue 19, point 4: every user-controlled string reaches an HTML page escaped. Hostile model folder names,
--text paths, dataset names, model specs and prompts go through the norms, horizon and sweep reports (tiny
random models), and the page helpers every report builds text with; no page may hold a <script> element or
an `on...` attribute."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from sweep_fixtures import one_thread, tiny_config  # noqa: F401  (fixture)
from tiny_models import save_tiny, tiny_model

from steerscope.depth.run import DepthRun, TextSpec, run_horizon, run_norms
from steerscope.render import html
from steerscope.sweep.report import sweep_report
from steerscope.sweep.runner import run_sweep

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "{{x}}"]
IDS = ["script", "onerror", "template"]


class _Danger(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.found.append("<script> element")
        self.found += [f"attribute {name}= on <{tag}>" for name, _ in attrs if name.lower().startswith("on")]

    handle_startendtag = handle_starttag


def assert_safe(folder: Path, hostile: str) -> int:
    """Every .html under `folder`: no script element, no on* attribute, the hostile text never raw."""
    pages = sorted(Path(folder).rglob("*.html"))
    assert pages, f"no HTML page under {folder}"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        parser = _Danger()
        parser.feed(text)
        assert not parser.found, (page, parser.found)
        if any(c in hostile for c in '<>"'):
            assert hostile not in text, f"{hostile!r} appears unescaped in {page}"
    return len(pages)


def _hostile_path(root: Path, hostile: str) -> Path:
    """A path whose text holds `hostile` whole ('/' becomes a folder boundary)."""
    path = root.joinpath(*hostile.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert hostile in str(path)
    return path


def _docs(path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    docs = [" ".join(f"w{int(i)}" for i in torch.randint(0, 90, (12,), generator=g)) for _ in range(10)]
    path.write_text("\n\n".join(docs))


# --- the norms and horizon reports ------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
@pytest.mark.parametrize("field", ["model folder", "text path"])
@pytest.mark.parametrize("kind", ["norms", "horizon"])
def test_depth_reports_escape_hostile_names(tmp_path, kind, field, hostile):
    model = _hostile_path(tmp_path / "m", hostile) if field == "model folder" else tmp_path / "tiny"
    save_tiny(model, "llama")
    text = _hostile_path(tmp_path / "t", hostile) if field == "text path" else tmp_path / "docs.txt"
    _docs(text)
    run = DepthRun(
        models=[str(model)], out=tmp_path / "out", text=TextSpec(source=str(text), n=4, seq_len=8), n_boot=20
    )
    folder, _ = run_horizon(run, ks=[1, 3]) if kind == "horizon" else run_norms(run)
    assert_safe(folder, hostile)
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert html.escape(str(text if field == "text path" else model)) in page  # shown, as text


# --- the sweep report --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", tokenizer=True)


SMALL = {"methods": ["mean_diff"], "sites": ["resid_pre.1"], "n_pairs": [1], "seeds": [0], "coefficients": [1.0]}


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
@pytest.mark.parametrize("field", ["model spec", "dataset name", "prompts", "instruction"])
def test_sweep_report_escapes_hostile_strings(tmp_path, lm, field, hostile):
    base = tiny_config(tmp_path, **SMALL)
    dataset = dict(base.custom_datasets["tinyset"])
    name = hostile if field == "dataset name" else "tinyset"
    if field == "prompts":
        prompts = json.loads(Path(dataset["prompts"]).read_text())
        prompts = {group: [f"{hostile} {p}" for p in ps] for group, ps in prompts.items()}
        dataset["prompts"] = str(tmp_path / "hostile_prompts.json")  # beside the tiny set's own (rewritten below)
        Path(dataset["prompts"]).write_text(json.dumps(prompts))
    if field == "instruction":
        dataset["instruction"] = hostile
    model = hostile if field == "model spec" else "tiny"
    config = tiny_config(tmp_path, **SMALL, models=[model], datasets={name: dataset}, side_effects={"enabled": False})
    store = run_sweep(config, tmp_path / "out", models={model: lm})
    report = sweep_report(store.parent, n_boot=20)
    assert_safe(report, hostile)
    assert html.escape(hostile) in (report / "index.html").read_text(encoding="utf-8")


# --- the helpers every page is built with ------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=IDS)
@pytest.mark.parametrize(
    "build",
    [
        lambda s: html.page(s, [("ok", html.paragraph("x"))]),  # title
        lambda s: html.page("t", [(s, html.paragraph("x"))]),  # heading
        lambda s: html.page("t", [("h", s)]),  # a plain-str body is text, not markup
        lambda s: html.page("t", [("h", html.paragraph("from ", html.code(s), " and ", html.bold(s)))]),
        lambda s: html.page("t", [("h", html.table([{s: s, "n": 1}]))]),
        lambda s: html.page("t", [("h", html.join(s, html.code_block(s)))]),
    ],
    ids=["title", "heading", "body", "paragraph", "table", "join"],
)
def test_page_helpers_escape_every_text_part(tmp_path, build, hostile):
    (tmp_path / "index.html").write_text(build(hostile), encoding="utf-8")
    assert_safe(tmp_path, hostile)


def test_image_alt_text_is_escaped(tmp_path):
    from PIL import Image

    Image.new("RGB", (2, 2)).save(tmp_path / "x.png")
    (tmp_path / "index.html").write_text(html.page("t", [("h", html.image(tmp_path / "x.png", HOSTILE[1]))]))
    assert_safe(tmp_path, HOSTILE[1])
