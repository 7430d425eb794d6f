"""Refusal figures: every scored candidate direction against its layer."""

from __future__ import annotations

from pathlib import Path

from ..render.figures import plt, save_figure


def refusal_selection_figure(rows: list[dict], baseline: dict, title: str, path: Path) -> None:
    """Bypass score, induce score and KL of every scored candidate against its layer, one line per position."""
    scored = [r for r in rows if r["bypass"] is not None]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = (
        ("bypass", "refusal score, harmful, direction ablated", baseline.get("harmful_refusal_score")),
        ("induce", "refusal score, harmless, direction added", baseline.get("harmless_refusal_score")),
        ("kl", "KL(clean || ablated), harmless, last position", None),
    )
    for ax, (key, label, base) in zip(axes, panels, strict=True):
        for pos in sorted({r["position"] for r in scored}):
            pts = sorted((r["layer"], r[key]) for r in scored if r["position"] == pos)
            ax.plot(*zip(*pts, strict=True), "o-", ms=3, label=f"position {pos}")
        chosen = [r for r in scored if r["status"] == "chosen"]
        if chosen:
            ax.plot(chosen[0]["layer"], chosen[0][key], "k*", ms=14, label="chosen")
        if base is not None:
            ax.axhline(base, color="0.4", ls="--", lw=1, label="no intervention")
        if key == "kl":
            ax.set_yscale("log")
        ax.set_xlabel("layer l of resid_pre.l")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)
