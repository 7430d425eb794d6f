"""The catalogue of methods: every way of finding an intervention from contrast pairs, described once.

Each method is a `MethodSpec` record in `METHODS` (name -> record): its fit function, how many pairs it
takes, which reads it accepts, which sites it must use, whether it is a control, which options it needs.
`fit(name, lm, pairs, sites, **options)` runs any of them and returns an Intervention
(steering.contract); the sweep, its config check, its report and the command line read the records and
never branch on a method's name. The catalogue sits above `steering` and `sae`, so either may be used.

`fit_intervention` is the sweep's fit: it also returns the cost (core.cost): the pairs' tokens, the wall
time and FLOPs of reading them, and, for a method whose record says so (an SAE's), the SAE's own training
tokens, time and FLOPs from its cfg.json, so a report can show the amortized cost next to the pairs used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .core.cost import forward_flops, text_tokens
from .core.errors import SteerscopeError
from .core.extract import READS
from .core.models import LoadedModel
from .sae.features import FEATURE_READS
from .sae.methods import fit_sae_add, fit_sae_clamp
from .steering import methods as steering
from .steering.contract import Intervention
from .steering.pairs import ContrastPair
from .steering.vector import SteeringVector

__all__ = [
    "COST_METRICS",
    "METHODS",
    "Catalogue",
    "Intervention",
    "MethodError",
    "MethodSpec",
    "at_site",
    "fit",
    "fit_intervention",
    "get_method",
    "is_control",
    "method_names",
    "method_sites",
    "register",
    "sae_site",
]

COST_METRICS = (
    "cost_pair_tokens",
    "cost_fit_seconds",
    "cost_fit_flops",
    "cost_sae_tokens",
    "cost_sae_seconds",
    "cost_sae_flops",
    "cost_total_tokens",
    "cost_total_seconds",
    "cost_total_flops",
)

SiteRule = Callable[[Mapping, Sequence[str]], list[str]]


class MethodError(SteerscopeError, ValueError):
    """A method asked for by a name the catalogue lacks, or with pairs, a read or options it cannot take."""


def any_site(options: Mapping, swept: Sequence[str]) -> list[str]:
    """The site rule of most methods: every site it is asked for."""
    return [str(s) for s in swept]


@dataclass(frozen=True)
class MethodSpec:
    """One method, described once.

    name, fit (`fit(lm, pairs, sites, read=..., batch_size=..., seed=..., **options)` -> Intervention),
    summary (one line, for help texts), min_pairs / max_pairs (None: no upper bound), reads (the `read`
    values it accepts; empty: it reads every position and takes no `read`), site_rule (options, the sites
    asked for -> the sites it is fitted at), control (a baseline such as `random`, not a contender),
    needs (options it cannot run without, name -> what to give), vector (fit returns a SteeringVector,
    a file `steerscope extract` can save).
    """

    name: str
    fit: Callable[..., Intervention]
    summary: str
    min_pairs: int = 1
    max_pairs: int | None = None
    reads: tuple[str, ...] = READS
    site_rule: SiteRule = any_site
    control: bool = False
    needs: tuple[tuple[str, str], ...] = ()
    vector: bool = True

    def takes(self, n_pairs: int) -> bool:
        """Whether it can be fitted on `n_pairs` pairs."""
        return self.min_pairs <= n_pairs and (self.max_pairs is None or n_pairs <= self.max_pairs)

    def pairs_wanted(self) -> str:
        """'exactly one contrast pair', 'at least 2 contrast pairs', ..."""
        lo, hi = self.min_pairs, self.max_pairs
        if hi == lo:
            return "exactly one contrast pair" if lo == 1 else f"exactly {lo} contrast pairs"
        if hi is None:
            return f"at least {lo} contrast pair{'s' if lo > 1 else ''}"
        return f"between {lo} and {hi} contrast pairs"

    def check_pairs(self, n_pairs: int) -> None:
        if not self.takes(n_pairs):
            raise MethodError(f"{self.name} takes {self.pairs_wanted()}, got {n_pairs}")

    def check_read(self, read: str) -> None:
        if not self.reads:
            raise MethodError(f"{self.name} reads every position of its pair and takes no read option (got {read!r})")
        if read not in self.reads:
            raise MethodError(f"{self.name} reads {', '.join(self.reads)}, got read={read!r}")

    def check_options(self, options: Mapping) -> None:
        for option, what in self.needs:
            if options.get(option) is None:
                raise MethodError(f"{self.name} needs the option {option} ({what})")

    def sites(self, options: Mapping, swept: Sequence[str]) -> list[str]:
        """The sites it is fitted at when asked for `swept` with `options` (raises when it can use none)."""
        return self.site_rule(options, swept)


class Catalogue(Mapping[str, MethodSpec]):
    """Method records by name, in registration order; registering a name twice is refused."""

    def __init__(self, specs: Sequence[MethodSpec] = ()) -> None:
        self._specs: dict[str, MethodSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: MethodSpec) -> MethodSpec:
        if spec.name in self._specs:
            raise MethodError(f"a method named {spec.name!r} is already in the catalogue; choose another name")
        self._specs[spec.name] = spec
        return spec

    def get_method(self, name: str) -> MethodSpec:
        """The record of `name`, or a MethodError that lists the methods."""
        if name not in self._specs:
            raise MethodError(f"unknown method {name!r}; methods: {', '.join(self._specs)}")
        return self._specs[name]

    def __getitem__(self, name: str) -> MethodSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


# --- the SAE methods' site rule -------------------------------------------------------------------------

SAE_OPTION = ("sae", "a folder with cfg.json + sae_weights.safetensors, or a SparseAutoencoder")


def sae_site(options: Mapping) -> str:
    """The site the SAE named in a method's options was trained at (from its cfg.json)."""
    from .sae.saelens import read_config

    folder = options.get("sae")
    if not folder:
        raise MethodError("the SAE methods need the option sae = '<folder with cfg.json + sae_weights.safetensors>'")
    site = folder.cfg.site if hasattr(folder, "cfg") else read_config(folder).site
    if not site:
        raise MethodError(f"the SAE in {folder} names no site; steerscope needs it to know where the SAE reads")
    return str(site)


def sae_sites(options: Mapping, swept: Sequence[str]) -> list[str]:
    """An SAE method works at its SAE's own site only; that site must be among those asked for."""
    site = sae_site(options)
    if site not in [str(s) for s in swept]:
        raise MethodError(f"the SAE at {options['sae']} reads {site}; add it to sites {list(swept)}")
    return [site]


# --- the catalogue --------------------------------------------------------------------------------------

METHODS = Catalogue(
    [
        MethodSpec(
            "actadd",
            steering.actadd,
            "one pair; the position-wise difference of its two prompts, added at the front of the prompt",
            min_pairs=1,
            max_pairs=1,
            reads=(),
        ),
        MethodSpec("mean_diff", steering.mean_diff, "mean over pairs of positive minus negative (CAA)"),
        MethodSpec("pca", steering.pca, "first principal component of the pair differences", min_pairs=2),
        MethodSpec("probe", steering.probe, "weight direction of a logistic-regression probe", min_pairs=2),
        MethodSpec(
            "random",
            steering.random_direction,
            "a random direction with the mean difference's norm (the control)",
            control=True,
        ),
        MethodSpec(
            "sae_add",
            fit_sae_add,
            "the decoder row of the SAE latent that best separates the pairs",
            reads=FEATURE_READS,
            site_rule=sae_sites,
            needs=(SAE_OPTION,),
        ),
        MethodSpec(
            "sae_clamp",
            fit_sae_clamp,
            "clamp the SAE latent that best separates the pairs (keeping the SAE's error term)",
            reads=FEATURE_READS,
            site_rule=sae_sites,
            needs=(SAE_OPTION,),
            vector=False,
        ),
    ]
)


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method to the catalogue (refused if its name is taken)."""
    return METHODS.register(spec)


def get_method(name: str) -> MethodSpec:
    """The record of a method, or a MethodError that lists the methods."""
    return METHODS.get_method(name)


def method_names(control: bool | None = None) -> list[str]:
    """The catalogue's method names (only the controls, or only the contenders, when `control` is given)."""
    return [n for n, spec in METHODS.items() if control is None or spec.control == control]


def is_control(name: str) -> bool:
    """Whether `name` is a control method (a baseline such as random); False for names outside the catalogue."""
    return name in METHODS and METHODS[name].control


def fit(
    name: str, lm: LoadedModel, pairs: Sequence[ContrastPair], sites: str | Sequence[str], **kwargs
) -> Intervention:
    """Fit the method `name` on contrast pairs at `sites`; `kwargs`: read, batch_size, seed and its options."""
    spec = get_method(name)
    if not isinstance(lm, LoadedModel) and not spec.reads:  # another engine (vLLM) reads one vector per text
        raise MethodError(
            f"{name} reads activations position by position, which only a Hugging Face model gives; fit it with "
            "engine='hf' (a LoadedModel)"
        )
    sites = [sites] if isinstance(sites, str) else [str(s) for s in sites]
    wrong = [p for p in pairs if not isinstance(p, ContrastPair)]
    if wrong:
        raise TypeError(
            f"pairs must be ContrastPair objects, got a {type(wrong[0]).__name__} ({wrong[0]!r:.60}); make them with "
            "ContrastPair(positive, negative) or load_pairs(...)"
        )
    spec.check_pairs(len(pairs))
    if "read" in kwargs:
        spec.check_read(kwargs["read"])
    spec.check_options(kwargs)
    return spec.fit(lm, list(pairs), sites, **kwargs)


def method_sites(method: str, sites: Sequence[str], options: Mapping) -> list[str]:
    """The sites of a sweep at which `method` is fitted (an SAE method: only its SAE's site)."""
    return get_method(method).sites(options, sites)


def fit_intervention(
    lm: LoadedModel, method: str, pairs: list[ContrastPair], sites: Sequence[str], seed: int, options: dict
) -> tuple[Intervention, dict[str, float]]:
    """Fit `method` on the pairs at `sites` (as a sweep does, 16 texts a batch); returns it and its cost."""
    start = time.perf_counter()
    fitted = fit(method, lm, pairs, list(sites), seed=seed, batch_size=16, **options)
    seconds = time.perf_counter() - start
    tokens = text_tokens(lm, [t for p in pairs for t in (p.positive, p.negative)])
    cost = {"cost_pair_tokens": float(tokens), "cost_fit_seconds": seconds}
    cost["cost_fit_flops"] = forward_flops(lm, sites, tokens)
    sae = fitted.meta.get("cost", {})  # what a method reports of its own making (an SAE's training)
    cost["cost_sae_tokens"] = float(sae.get("sae_train_tokens") or 0.0)
    cost["cost_sae_seconds"] = float(sae.get("sae_train_seconds") or 0.0)
    cost["cost_sae_flops"] = float(sae.get("sae_train_flops") or 0.0)
    for part in ("tokens", "seconds", "flops"):
        own = cost["cost_pair_tokens"] if part == "tokens" else cost[f"cost_fit_{part}"]
        cost[f"cost_total_{part}"] = own + cost[f"cost_sae_{part}"]
    return fitted, cost


def at_site(fitted: Intervention, site: str) -> Intervention:
    """The intervention restricted to one site (a vector keeps only that site; a one-site intervention stays)."""
    if isinstance(fitted, SteeringVector):
        return SteeringVector({site: fitted.vectors[site]}, dict(fitted.meta))
    if list(fitted.sites) != [site]:
        raise MethodError(f"this intervention acts at {', '.join(fitted.sites)}, not {site}")
    return fitted
