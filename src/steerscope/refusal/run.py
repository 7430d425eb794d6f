"""Runner for `steerscope refusal`: find the refusal direction, check ablation and addition, export the model.

Steps (each result lands in `<out>.partial/` and the folder moves into place when complete, core.runs.RunFolder;
candidate scores are checkpointed one by one, so an interrupted selection resumes where it stopped when the
settings they depend on (RefusalRun.config) are equal, and is refused naming the ones that differ otherwise):
1. candidates from the built-in train instructions (minus a validation tail), chat-formatted;
2. selection on the validation prompts (rule in steerscope.refusal_direction);
3. greedy completions of the held-out test instructions: harmful without and with inference-time ablation,
   harmless without and with activation addition (and with ablation, to show harmless prompts still work);
4. delta CE and KL on the built-in Wikipedia text under ablation and addition;
5. the direction baked into the weights (steerscope.orthogonalize), exported as a Hugging Face folder,
   reloaded from disk and measured again (refusal on harmful test prompts, delta CE).
"""

from __future__ import annotations

import copy
import gc
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file, save

from .._version import __version__
from ..core.errors import NoDirectionError
from ..core.generate import generate_text
from ..core.hooks import add, project_out
from ..core.io import atomic_write_bytes, write_csv, write_json
from ..core.loading import load_model
from ..core.models import LoadedModel
from ..core.runs import RunFolder, check_settings, model_info, package_versions, progress_bar
from ..core.sites import site_name
from ..core.validate import BadNumberError, finite, whole
from ..core.weights import OrthogonalizationError, export, orthogonalize
from ..evaluate.fluency import SideEffectProbe
from ..evaluate.stats import bootstrap_mean_ci
from ..render import html
from ..steering.vector import SteeringVector
from . import figures
from .direction import (
    Candidate,
    SelectionRule,
    candidate_directions,
    n_scored,
    post_instruction_tokens,
    select_direction,
    split_validation,
)
from .instructions import chat_prompts, is_refusal, load_instructions

Intervention = Callable[[], AbstractContextManager]


@dataclass(frozen=True)
class RefusalRun:
    model: str
    out: Path
    n_val: int = 32
    n_fit: int | None = None  # train instructions of each kind the candidates are made from (None: all but n_val)
    kl_max: float = 0.1
    max_layer_frac: float = 0.8
    induce_min: float | str = 0.0  # or 'baseline': the harmless prompts' own refusal score
    layer_step: int = 1
    last_positions: int | None = None
    max_new_tokens: int = 48
    n_test: int | None = None  # held-out instructions of each kind to complete (None: all 48)
    batch_size: int = 16
    text_n: int = 32
    text_len: int = 128
    export_model: bool = True
    overwrite: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    restart: bool = False  # discard an unfinished run in `<out>.partial` made with other settings
    trust_remote_code: bool = False  # run Python code shipped in the model folder (see load_model)

    def __post_init__(self) -> None:
        """Refuse bad numbers before any work, naming the setting and its allowed range."""
        for name in ("n_val", "layer_step", "max_new_tokens", "batch_size", "text_n"):
            whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1)
        whole(self.text_len, "text_len (--text-len)", 2)
        for name in ("n_fit", "last_positions", "n_test"):
            if getattr(self, name) is not None:
                whole(getattr(self, name), f"{name} (--{name.replace('_', '-')})", 1)
        if not self.kl_max >= 0:  # inf: no limit; NaN fails every comparison
            raise BadNumberError(f"kl_max (--kl-max) must be a number >= 0 (inf: no limit), got {self.kl_max}")
        finite(self.max_layer_frac, "max_layer_frac (--max-layer-frac)", 0.0, 1.0)
        if self.max_layer_frac == 0:
            raise BadNumberError("max_layer_frac (--max-layer-frac) must be in (0, 1]; 0 leaves no candidate layer")
        if self.induce_min != "baseline" and (
            isinstance(self.induce_min, bool)
            or not isinstance(self.induce_min, int | float)
            or self.induce_min != self.induce_min
        ):
            raise BadNumberError(
                f"induce_min (--induce-min) must be a number (-inf: no minimum) or 'baseline', got {self.induce_min!r}"
            )

    def config(self) -> dict:
        """What candidate directions and their scores depend on: the run folder's settings record (thresholds
        and sweep thinning are not in it: a rerun with other thresholds or a denser sweep reuses every score
        already computed; completions and text effects are never cached)."""
        keep = ("model", "n_val", "n_fit", "dtype")
        return {k: v for k, v in asdict(self).items() if k in keep} | {"version": __version__}

    def rule(self) -> SelectionRule:
        return SelectionRule(
            kl_max=self.kl_max,
            max_layer_frac=self.max_layer_frac,
            induce_min=self.induce_min,
            layer_step=self.layer_step,
            last_positions=self.last_positions,
        )


def _candidates(lm: LoadedModel, run: RefusalRun, folder: RunFolder, progress) -> tuple[torch.Tensor, list, list]:
    """Candidate directions (cached in the partial folder) and the validation prompts."""
    harmful_fit, harmful_val = split_validation(chat_prompts(lm, load_instructions("harmful", "train")), run.n_val)
    harmless_fit, harmless_val = split_validation(chat_prompts(lm, load_instructions("harmless", "train")), run.n_val)
    harmful_fit, harmless_fit = harmful_fit[: run.n_fit], harmless_fit[: run.n_fit]
    path = folder.path("candidates.safetensors")
    cfg = json.dumps(run.config(), sort_keys=True)
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            stored = json.loads((fh.metadata() or {}).get("config", "{}"))
        check_settings(stored, run.config(), path, "pass --restart to start over")
        return load_file(str(path))["directions"], harmful_val, harmless_val
    n_pos = len(post_instruction_tokens(lm))
    batches = -(-len(harmful_fit) // run.batch_size) + -(-len(harmless_fit) // run.batch_size)
    task = progress.add_task("candidate directions", total=batches)
    directions = candidate_directions(
        lm, harmful_fit, harmless_fit, n_pos, run.batch_size, on_batch=lambda: progress.advance(task)
    )
    atomic_write_bytes(path, save({"directions": directions.contiguous()}, metadata={"config": cfg}))
    return directions, harmful_val, harmless_val


def _select(lm, run: RefusalRun, directions, harmful_val, harmless_val, folder: RunFolder, progress):
    ckpt = folder.path("selection-checkpoint.json")
    state = json.loads(ckpt.read_text()) if ckpt.is_file() else {"config": run.config(), "scored": []}
    check_settings(state.get("config"), run.config(), ckpt, "pass --restart to start over")
    scored = {(c["position"], c["layer"]): Candidate(**c) for c in state["scored"]}
    total = n_scored(directions.shape[0], lm.n_layers, run.max_layer_frac, run.layer_step, run.last_positions)
    task = progress.add_task("scoring candidates", total=total, completed=len(scored))

    def checkpoint(c: Candidate) -> None:
        state["scored"].append(asdict(c))
        write_json(ckpt, state)
        progress.advance(task)

    return select_direction(
        lm,
        directions,
        harmful_val,
        harmless_val,
        run.rule(),
        batch_size=run.batch_size,
        on_candidate=checkpoint,
        scored=scored,
    )



def _nothing_passed(selection, run: RefusalRun, table: Path) -> str:
    scored = [c for c in selection.candidates if c.bypass is not None]
    base = selection.baseline
    best_induce = max((c.induce for c in scored), default=float("nan"))
    least_kl = min((c.kl for c in scored), default=float("nan"))
    return (
        f"no candidate passed the selection filters (ablation lowers the harmful refusal score, ablation KL < "
        f"{run.kl_max:g} on harmless prompts, addition "
        f"raises the harmless refusal score above {selection.rule['induce_min']:.3g}, "
        f"layer < {run.max_layer_frac:g} L). "
        f"Refusal scores without intervention: harmful {base['harmful_refusal_score']:.3g}, harmless "
        f"{base['harmless_refusal_score']:.3g}; the best addition reached {best_induce:.3g}, the smallest ablation KL "
        f"was {least_kl:.3g}. A model that barely refuses never passes the published 'above 0' rule: "
        f"--induce-min baseline asks only for a rise above the harmless score. Scores: {table}"
    )


def _rate(completions: list[str]) -> dict:
    flags = np.asarray([is_refusal(c) for c in completions], dtype=float)
    lo, hi = bootstrap_mean_ci(flags)
    return {"refusal_rate": float(flags.mean()), "ci": [lo, hi], "n": len(flags)}


def _complete(lm, prompts, run: RefusalRun, intervention: Intervention = nullcontext) -> list[str]:
    out = []
    for start in range(0, len(prompts), run.batch_size):
        with intervention():
            out += generate_text(lm, prompts[start : start + run.batch_size], max_new_tokens=run.max_new_tokens)
    return out


def _text_effects(probe: SideEffectProbe, intervention: Intervention = nullcontext) -> dict:
    """Delta CE and KL against the clean model on the probe's Wikipedia batches, with bootstrap intervals."""
    per_seq = probe.measure(intervention)
    return {k: {"mean": float(np.mean(v)), "ci": list(bootstrap_mean_ci(v))} for k, v in per_seq.items()}


def run_refusal(run: RefusalRun, console: Console | None = None, lm: LoadedModel | None = None) -> tuple[Path, dict]:
    """The whole study for one model; returns the result folder and the summary.

    `lm`: the already loaded model `run.model` names (loaded from the spec when None); it is left unedited
    (the export edits a copy).
    """
    console = console or Console()
    folder = RunFolder(run.out, run.config(), run.overwrite, run.restart)
    lent = lm is not None
    lm = (
        lm
        if lent
        else load_model(run.model, dtype=run.dtype, device=run.device, trust_remote_code=run.trust_remote_code)
    )
    info = model_info(lm, run.model)  # before the export edits the weights (and the fingerprint)
    console.print(f"[bold]{run.model}[/bold]: {lm.adapter.describe()}, {lm.n_layers} layers, d_model {lm.d_model}")
    harmful_test = chat_prompts(lm, load_instructions("harmful", "test")[: run.n_test])
    harmless_test = chat_prompts(lm, load_instructions("harmless", "test")[: run.n_test])
    with progress_bar(console) as progress:
        directions, harmful_val, harmless_val = _candidates(lm, run, folder, progress)
        selection = _select(lm, run, directions, harmful_val, harmless_val, folder, progress)
        rows = [asdict(c) for c in selection.candidates]
        write_csv(folder.path("candidates.csv"), rows)
        figures.refusal_selection_figure(
            rows, selection.baseline, f"{lm.name}: refusal-direction candidates", folder.path("candidates.png")
        )
        chosen = selection.chosen
        if chosen is None:
            raise NoDirectionError(_nothing_passed(selection, run, folder.path("candidates.csv")))
        site = site_name("resid_pre", chosen.layer)
        r = directions[chosen.position + directions.shape[0], chosen.layer].float()
        vector = SteeringVector(
            {site: r},
            {
                "method": "refusal_diff_in_means",
                "model": lm.name,
                "fingerprint": lm.fingerprint(),
                "d_model": lm.d_model,
                "dataset": "steerscope built-in instructions (harmful minus harmless, train split)",
                "options": {"position": chosen.position, "layer": chosen.layer, **selection.rule},
            },
        )
        vector.save(folder.path("direction.safetensors"))

        def ablate():
            return project_out(lm, r)

        def induce():
            return add(lm, {site: r})

        task = progress.add_task("completions", total=5)
        completions = {}
        for name, prompts, intervention in (
            ("harmful", harmful_test, nullcontext),
            ("harmful_ablated", harmful_test, ablate),
            ("harmless", harmless_test, nullcontext),
            ("harmless_added", harmless_test, induce),
            ("harmless_ablated", harmless_test, ablate),
        ):
            completions[name] = _complete(lm, prompts, run, intervention)
            progress.advance(task)
        probe = SideEffectProbe.prepare(lm, "wikipedia", run.text_n, run.text_len, run.batch_size)
        text = {
            "ablation": _text_effects(probe, ablate),
            "addition": _text_effects(probe, induce),
        }
        exported = _export_and_measure(
            replace(lm, model=copy.deepcopy(lm.model)) if lent else lm,
            r,
            run,
            folder,
            harmful_test,
            harmless_test,
            probe,
            completions,
            text,
            console,
        )
    summary = {
        **info,
        "steerscope": __version__,
        "versions": package_versions(),
        "config": asdict(run) | {"out": str(run.out)},
        "chosen": asdict(chosen),
        "selection": {"baseline": selection.baseline, **selection.rule},
        "refusal": {name: _rate(c) for name, c in completions.items()},
        "text": text,
        "export": exported,
        "generation": f"greedy, {run.max_new_tokens} new tokens, chat template",
    }
    write_json(folder.path("summary.json"), summary)
    with folder.path("completions.jsonl").open("w", encoding="utf-8") as fh:
        for name, outs in completions.items():
            prompts = harmful_test if name.startswith("harmful") else harmless_test
            for prompt, out in zip(prompts, outs, strict=True):
                fh.write(
                    json.dumps({"condition": name, "prompt": prompt, "completion": out, "refusal": is_refusal(out)})
                    + "\n"
                )
    _write_page(folder, summary, completions, harmful_test, harmless_test)
    return folder.commit(), summary


def _export_and_measure(lm, r, run, folder, harmful_test, harmless_test, probe, completions, text, console):
    if not run.export_model:
        return {"done": False, "reason": "not asked (--no-export)"}
    try:
        record = orthogonalize(lm, r)
    except OrthogonalizationError as exc:
        console.print(f"[yellow]export skipped:[/yellow] {exc}")
        return {"done": False, "reason": str(exc)}
    path = export(lm, folder.path("model"), record, overwrite=True)
    gc.collect()
    edited = load_model(str(path), dtype=run.dtype, device=run.device)
    completions["harmful_exported"] = _complete(edited, harmful_test, run)
    completions["harmless_exported"] = _complete(edited, harmless_test, run)
    text["exported"] = _text_effects(SideEffectProbe(edited, probe.batches))  # clean reference: the unedited model
    return {"done": True, "folder": "model", **record}


def _write_page(folder: RunFolder, summary: dict, completions: dict, harmful_test, harmless_test) -> None:
    rows = [{"condition": name, **{k: v for k, v in rate.items()}} for name, rate in summary["refusal"].items()]
    text_rows = [
        {
            "intervention": k,
            "delta_ce": v["delta_ce"]["mean"],
            "delta_ce_ci": v["delta_ce"]["ci"],
            "kl": v["kl"]["mean"],
            "kl_ci": v["kl"]["ci"],
        }
        for k, v in summary["text"].items()
    ]
    examples = []
    for name in completions:
        prompts = harmful_test if name.startswith("harmful") else harmless_test
        examples.append({"condition": name, "prompt": prompts[0][-80:], "completion": completions[name][0][:160]})
    c = summary["chosen"]
    sections = [
        (
            "Chosen direction",
            html.paragraph(
                html.code(site_name("resid_pre", c["layer"])),
                f" at post-instruction position {c['position']} (norm {c['norm']:.3g}); bypass score "
                f"{c['bypass']:.3g}, induce score {c['induce']:.3g}, KL {c['kl']:.3g}. "
                f"Rule: {html.fmt(summary['selection'])}",
            ),
        ),
        ("Refusal rate (held-out test instructions)", html.table(rows)),
        ("Side effects on Wikipedia text", html.table(text_rows)),
        ("Candidates", html.image(folder.path("candidates.png"), "candidate scores")),
        ("First completion per condition", html.table(examples)),
    ]
    folder.path("index.html").write_text(html.page("steerscope refusal direction", sections), encoding="utf-8")


def print_refusal_summary(summary: dict, console: Console) -> None:
    table = Table(title=f"{summary['name']}: refusal on held-out instructions")
    for col in ("condition", "refusal rate", "95% CI", "n"):
        table.add_column(col)
    for name, rate in summary["refusal"].items():
        table.add_row(name, f"{rate['refusal_rate']:.3f}", html.fmt(rate["ci"]), str(rate["n"]))
    console.print(table)
    for name, eff in summary["text"].items():
        console.print(
            f"  {name}: delta CE {eff['delta_ce']['mean']:+.4f} nats, KL {eff['kl']['mean']:.4f} on Wikipedia"
        )
