"""The main job: `steerscope demo --quick` on the embedded model writes a complete, self-contained report."""

import base64
import json
from html.parser import HTMLParser

import pytest
from test_commands import parse_with_cli

from steerscope.demo import Demo, horizon_ks, run_demo


class _Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings: list[str] = []
        self.images: list[bytes] = []
        self.code: list[str] = []
        self._tag = None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        src = dict(attrs).get("src", "")
        if tag == "img":
            assert src.startswith("data:image/png;base64,"), "images must be embedded"
            self.images.append(base64.b64decode(src.split(",", 1)[1]))

    def handle_data(self, data):
        if self._tag == "h2":
            self.headings.append(data)
        elif self._tag == "code":
            self.code.append(data)

    def handle_endtag(self, tag):
        self._tag = None


def test_horizon_ks_cover_the_depth():
    assert horizon_ks(30, quick=True) == [1, 15, 30]
    ks = horizon_ks(30, quick=False)
    assert ks[0] == 1 and ks[-1] == 30 and ks == sorted(set(ks)) and len(ks) >= 8
    assert horizon_ks(2, quick=False) == [1, 2]


@pytest.mark.embedded
def test_quick_demo_report_has_every_section_with_figures_and_commands(tmp_path):
    page = run_demo(Demo(out=tmp_path / "demo", quick=True))
    assert page == tmp_path / "demo" / "index.html" and not (tmp_path / "demo.partial").exists()
    report = _Report()
    report.feed(page.read_text(encoding="utf-8"))
    for heading in (
        "Model, data and versions",
        "Residual norm growth and the effective layer horizon",
        "Steering: a sentiment vector, side by side",
        "Method comparison: sample complexity against the baselines",
        "The refusal direction: ablation, addition, export",
        "Reproduce everything",
    ):
        assert heading in report.headings, heading
    assert len(report.images) >= 2 and all(img.startswith(b"\x89PNG") for img in report.images)  # norms, horizon
    commands = "\n".join(report.code)
    for command in (
        "steerscope horizon default",
        "steerscope extract default",
        "steerscope sweep demo_sweep.toml",
        "steerscope refusal default",
    ):
        assert command in commands
    lines = [line for line in commands.splitlines() if line.startswith("steerscope ")]
    assert len(lines) >= 6 and all(parse_with_cli(line) for line in lines)  # each parses with the real CLI
    results = json.loads((tmp_path / "demo" / "demo.json").read_text())
    # Two scored candidates in the quick run may both fail the published filters: then the report says so.
    assert "chosen" in results["refusal"] or "no candidate passed" in results["refusal"]["error"]
    assert results["provenance"]["layers"] == 30 and results["depth"]["layers"] == 30
    assert set(results["steering"]["positive_share"]) == {"unsteered", "+4 x vector", "-4 x vector"}
    assert {r["method"] for r in results["comparison"]["summary"]} >= {"mean_diff", "probe"}
    assert len(report.images) >= 4  # norms, horizon, sample complexity, effect vs fluency
