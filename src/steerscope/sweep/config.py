"""Sweep configuration from a TOML or YAML file.

Top-level keys (lists are swept): models, methods, sites, coefficients, n_pairs, seeds, datasets,
baselines, random_n_pairs, method_options, reference_method, n_boot, dtype, device, device_map, max_memory;
tables [generation], [selection], [side_effects], [datasets.NAME] for datasets of your own (see steering/tasks.py),
[ray] (workers, gpus_per_worker, cpus_per_worker, address: run the cells on Ray workers) and [search] (what
`steerscope search` samples and minimises; sweep/search.py) and [panel] (the side-effect panel of A/B sweeps;
sweep/panel.py).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..core.cluster import RaySpec
from ..core.errors import ConfigError
from ..core.loading import parse_device_map, parse_max_memory
from ..core.reading import file_error, read_text
from ..core.validate import MAX_COEFFICIENT, BadNumberError, finite, whole
from ..methods import METHODS, method_names

#: what every method is compared against: no steering, prompting, and the catalogue's controls (random)
BASELINES = ("unsteered", "prompting", *method_names(control=True))



@dataclass(frozen=True)
class GenerationSpec:
    """How completions are generated (the same for every cell)."""

    max_new_tokens: int = 30
    repetition_penalty: float = 1.3
    do_sample: bool = False
    temperature: float = 1.0
    seed: int = 0
    batch_size: int = 24


@dataclass(frozen=True)
class SelectionSpec:
    """The coefficient (and site) of a method is the one with the largest validation effect among those
    whose mean fluency cost (nats/token over the unsteered completions) is at most `max_fluency_cost`;
    if none qualifies, the one with the smallest fluency cost."""

    max_fluency_cost: float = 1.0


@dataclass(frozen=True)
class SideEffectSpec:
    """Natural text for delta CE / KL with the intervention on (measured on test cells)."""

    enabled: bool = True
    source: str = "wikipedia"
    n: int = 16
    seq_len: int = 64
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class PanelSpec:
    """The side-effect panel of an A/B sweep (sweep/panel.py): every fitted vector, at the site chosen for it, is
    also measured on the other behaviours' test items (the entanglement matrix: steer X, measure Y, P(+1) - P(-1))
    and on the A/B files in `ab_files` (e.g. MMLU or TruthfulQA in CAA's A/B layout; at most `n_items` of each)."""

    entanglement: bool = True
    ab_files: list[str] = field(default_factory=list)
    n_items: int = 50


#: side effects a search can minimise (fluency cost on the prompts' completions; delta CE or KL on natural text)
SEARCH_OBJECTIVES = ("fluency_cost", "kl", "delta_ce")


@dataclass(frozen=True)
class SearchSpec:
    """`steerscope search`: Optuna's multi-objective TPE over site x coefficient (x method, x n_pairs when the
    config lists several) on validation, maximising the effect and minimising `objective`.

    trials: settings the search evaluates (0: as many as the grid has, the equal budget); coefficient_min /
    coefficient_max: the coefficient's range (default: the config's smallest and largest coefficient); log: sample
    it on a log scale; max_side_effect: the chosen point is the front's largest effect with the side effect at
    most this (default: [selection] max_fluency_cost for fluency_cost, 0.1 nats for kl and delta_ce); grid: also
    evaluate the config's grid on validation and compare the two fronts; seed: the sampler's."""

    trials: int = 0
    objective: str = "kl"
    coefficient_min: float | None = None
    coefficient_max: float | None = None
    log: bool = False
    max_side_effect: float | None = None
    grid: bool = True
    seed: int = 0


@dataclass(frozen=True)
class SweepConfig:
    sites: list[str]
    coefficients: list[float]
    n_pairs: list[int]
    models: list[str] = field(default_factory=lambda: ["default"])
    methods: list[str] = field(default_factory=lambda: ["mean_diff"])
    seeds: list[int] = field(default_factory=lambda: [0])
    datasets: list[str] = field(default_factory=lambda: ["sentiment"])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    random_n_pairs: int = 0  # 0: the largest n_pairs
    method_options: dict = field(default_factory=dict)  # {method: {option: value}}, e.g. {probe = {C = 0.1}}
    reference_method: str = "mean_diff"  # its chosen coefficient is where methods are compared at matched norm
    n_boot: int = 1000
    dtype: str = "float32"
    device: str = "cpu"
    device_map: str | dict = ""  # split each model over devices (core.loading.load_model); "" keeps it on `device`
    max_memory: str | dict = ""  # accelerate's budget per device for device_map, e.g. {0 = "20GiB", cpu = "64GiB"}
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    selection: SelectionSpec = field(default_factory=SelectionSpec)
    side_effects: SideEffectSpec = field(default_factory=SideEffectSpec)
    custom_datasets: dict = field(default_factory=dict)
    ray: RaySpec | None = None  # where the cells run (never part of the settings: it changes no value)
    engine: str = "hf"  # "vllm": completions generated through vLLM (sweep/cells.py); fits and scores stay on HF
    search: SearchSpec | None = None  # `steerscope search` only (not part of a sweep's settings)
    panel: PanelSpec | None = None  # the side-effect panel of A/B sweeps (its own store records its settings)

    @property
    def random_pairs(self) -> int:
        return self.random_n_pairs or max(self.n_pairs)

    def settings(self) -> dict:
        """Every setting of the sweep: the grid (models, methods, sites, coefficients, n_pairs, seeds, datasets,
        baselines, random_n_pairs, reference_method) and what shapes each value (generation, selection, side
        effects, n_boot, dtype, device, method options, dataset definitions). The run folder and the store record
        them, and a rerun with any one different is refused naming each (old -> new): results of two grids are
        never merged into one store or report. Where the cells run ([ray]) is no setting: it changes no value."""
        out = asdict(self)
        del out["ray"], out["search"], out["panel"]
        if out["engine"] == "hf":  # the default is left out, so stores written before the key existed still match
            del out["engine"]
        return out


_TABLES = {
    "generation": GenerationSpec,
    "selection": SelectionSpec,
    "side_effects": SideEffectSpec,
    "ray": RaySpec,
    "search": SearchSpec,
    "panel": PanelSpec,
}


def _table(cls, data, name: str, where: str = "config"):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    allowed = {f.name for f in fields(cls)}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)} in [{name}]; allowed: {', '.join(sorted(allowed))}"
        )
    try:
        return cls(**data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: [{name}] {exc}") from None


def _as_list(value, key: str) -> list:
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"'{key}' is an empty list; give at least one value")
        return list(value)
    return [value]


def parse_config(data: dict, where: str = "config") -> SweepConfig:
    """Validate a parsed config mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level")
    data = dict(data)
    allowed = {f.name for f in fields(SweepConfig)} - {"custom_datasets"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}")
    for key in ("sites", "coefficients", "n_pairs"):
        if key not in data:
            raise ConfigError(f"{where}: '{key}' is required (e.g. sites = [\"resid_pre.10\"])")
    kwargs = {}
    for key, cls in _TABLES.items():
        if key in data:
            kwargs[key] = _table(cls, data.pop(key), key, where)
    datasets = data.pop("datasets", ["sentiment"])
    custom = {}
    if isinstance(datasets, dict):  # [datasets.NAME] tables
        custom = {name: spec for name, spec in datasets.items() if isinstance(spec, dict) and spec}
        datasets = list(datasets)
    for key in ("models", "methods", "sites", "coefficients", "n_pairs", "seeds", "baselines"):
        if key in data:
            data[key] = _as_list(data[key], key)
    config = SweepConfig(**data, **kwargs, datasets=_as_list(datasets, "datasets"), custom_datasets=custom)
    _check(config, where)
    return config


def _positive_number(x: object) -> bool:
    """A finite real > 0 (TOML `true` is a bool, which Python would take as 1)."""
    return not isinstance(x, bool) and isinstance(x, int | float) and math.isfinite(x) and x > 0


def _whole_at_least(n: object, low: int) -> bool:
    """An int >= low that is not a bool (TOML `true` would pass as 1)."""
    return not isinstance(n, bool) and isinstance(n, int) and n >= low


def _check_tables(c: SweepConfig, where: str) -> None:
    """Every value of [generation], [selection] and [side_effects], and the top-level scalars, before any work: a
    value a cell would fail on is refused here, naming its table and key (a rerun could never fix it)."""
    g, sel, side = c.generation, c.selection, c.side_effects
    checks = [
        (lambda: whole(g.max_new_tokens, "[generation] max_new_tokens", 1, 100_000)),
        (lambda: finite(g.repetition_penalty, "[generation] repetition_penalty", 0.01, 100.0)),
        (lambda: finite(g.temperature, "[generation] temperature", 1e-6, 1e6)),
        (lambda: whole(g.seed, "[generation] seed", 0)),
        (lambda: whole(g.batch_size, "[generation] batch_size", 1)),
        (lambda: finite(sel.max_fluency_cost, "[selection] max_fluency_cost", 0.0)),
        (lambda: whole(side.n, "[side_effects] n", 1)),
        (lambda: whole(side.seq_len, "[side_effects] seq_len", 2)),
        (lambda: whole(side.batch_size, "[side_effects] batch_size", 1)),
        (lambda: whole(side.seed, "[side_effects] seed", 0)),
        (lambda: whole(c.random_n_pairs, "random_n_pairs", 0)),
    ]
    for run_check in checks:
        try:
            run_check()
        except BadNumberError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    for flag, value in (("[generation] do_sample", g.do_sample), ("[side_effects] enabled", side.enabled)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {flag} must be true or false, got {value!r}")
    for key, value in (("[side_effects] source", side.source), ("dtype", c.dtype), ("device", c.device),
                       ("reference_method", c.reference_method)):  # fmt: skip
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    for key in ("models", "methods", "sites", "datasets", "baselines"):
        bad = [v for v in getattr(c, key) if not isinstance(v, str) or not v]
        if bad:
            raise ConfigError(f"{where}: {key} must be names (strings), got {bad}")


def _check(c: SweepConfig, where: str) -> None:
    if c.engine not in ("hf", "vllm"):
        raise ConfigError(f"{where}: engine must be 'hf' (the default) or 'vllm', got {c.engine!r}")
    _check_tables(c, where)
    contenders = method_names(control=False)
    bad = [m for m in c.methods if m not in contenders]
    if bad:
        controls = method_names(control=True)
        names = ", ".join(contenders)
        role = "is a baseline" if len(controls) == 1 else "are baselines"
        raise ConfigError(f"{where}: unknown method(s) {bad}; methods: {names} ({', '.join(controls)} {role})")
    bad = [b for b in c.baselines if b not in BASELINES]
    if bad:
        raise ConfigError(f"{where}: unknown baseline(s) {bad}; baselines: {', '.join(BASELINES)}")
    if not all(_whole_at_least(n, 1) for n in c.n_pairs):
        raise ConfigError(f"{where}: n_pairs must be positive integers, got {c.n_pairs}")
    if not all(_whole_at_least(n, 0) for n in c.seeds):
        raise ConfigError(f"{where}: seeds must be integers >= 0, got {c.seeds}")
    if not all(_positive_number(x) and x <= MAX_COEFFICIENT for x in c.coefficients):
        raise ConfigError(
            f"{where}: coefficients must be finite positive numbers up to {MAX_COEFFICIENT:g} (0 is the unsteered "
            f"baseline; a coefficient multiplies the steering vector), got {c.coefficients}"
        )
    if not _whole_at_least(c.n_boot, 1):
        raise ConfigError(f"{where}: n_boot must be an integer >= 1, got {c.n_boot!r}")
    if not isinstance(c.method_options, dict) or set(c.method_options) - set(contenders):
        raise ConfigError(f"{where}: method_options must be a table keyed by method name ({', '.join(contenders)})")
    for m in c.methods:
        spec, options = METHODS[m], c.method_options.get(m, {})
        try:
            spec.sites(options, c.sites)
            spec.check_options(options)
        except ValueError as exc:
            raise ConfigError(f"{where}: {m}: {exc} (its options go in [method_options.{m}])") from exc
        if not any(spec.takes(n) for n in c.n_pairs):
            raise ConfigError(f"{where}: {m} takes {spec.pairs_wanted()}; none of n_pairs {c.n_pairs} fits")
    try:
        parse_device_map(c.device_map or None)
        parse_max_memory(c.max_memory or None)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if c.search is not None:
        check_search(c.search, c.coefficients, where)
    if c.panel is not None and (not _whole_at_least(c.panel.n_items, 1) or not isinstance(c.panel.ab_files, list)):
        raise ConfigError(f"{where}: [panel] needs n_items >= 1 and ab_files a list of A/B files, got {c.panel}")
    if c.reference_method not in c.methods:
        raise ConfigError(
            f"{where}: reference_method {c.reference_method!r} is not among the swept methods {c.methods}"
        )


def check_search(s: SearchSpec, coefficients: list[float], where: str) -> None:
    if s.objective not in SEARCH_OBJECTIVES:
        names = ", ".join(SEARCH_OBJECTIVES)
        raise ConfigError(f"{where}: [search] objective must be one of {names}, got {s.objective!r}")
    if not _whole_at_least(s.trials, 0):
        raise ConfigError(f"{where}: [search] trials must be an integer >= 0 (0: the grid's size), got {s.trials!r}")
    lo, hi = search_range(s, coefficients)
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in (lo, hi)):
        raise ConfigError(f"{where}: [search] coefficient_min and coefficient_max must be finite numbers")
    if not lo < hi or (s.log and lo <= 0):
        raise ConfigError(
            f"{where}: [search] needs coefficient_min < coefficient_max (both > 0 with log = true), got {lo}, {hi}; "
            "set them in [search] or list at least two coefficients"
        )
    if s.max_side_effect is not None and not _positive_number(s.max_side_effect):
        raise ConfigError(f"{where}: [search] max_side_effect must be a positive number, got {s.max_side_effect!r}")


def search_range(s: SearchSpec, coefficients: list[float]) -> tuple[float, float]:
    """The coefficient range a search samples from."""
    lo = s.coefficient_min if s.coefficient_min is not None else min(coefficients)
    hi = s.coefficient_max if s.coefficient_max is not None else max(coefficients)
    return lo, hi


def load_config(path: str | Path) -> SweepConfig:
    """Read a .toml, .yaml or .yml sweep configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no sweep config at {path}")
    text = read_text(path, "a sweep config (TOML or YAML)", "see configs/ for examples", ConfigError)
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(exc, "problem", None) or type(exc).__name__
            column = f", column {mark.column + 1}" if mark is not None else ""
            raise file_error(
                where, f"not valid YAML ({problem}{column})", "a YAML mapping of sweep settings",
                "see configs/ for examples", ConfigError,
            ) from None
    else:
        raise ConfigError(f"{path}: unknown config format; use .toml, .yaml or .yml")
    return parse_config(data, str(path))
