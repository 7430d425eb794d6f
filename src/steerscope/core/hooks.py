"""Hook primitives on named sites: read, add, replace, project out.

Every primitive is a context manager; its hooks are removed on exit, also after an exception.
Hooks are forward hooks and pre-hooks on the modules the adapter names; no module is wrapped.

Every primitive also takes a plain torch module instead of a LoadedModel; its sites are then module
paths (`embedder.block2.res1`, or `...:in` for the input). A vector there has the activation's shape
without the batch axis (e.g. [C, H, W]) or, for a conv map, one value per channel [C].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TypeVar

import torch
from torch import Tensor, nn

from .forward import run_forward  # noqa: F401  (re-exported: callers import it from here)
from .locate import SiteLocator, locator_for
from .models import LoadedModel
from .positions import PositionState, PositionTracker, position_weights, validate_positions
from .sites import Site, residual_write_names
from .validate import BadNumberError, check_coefficient

Edit = Callable[[Tensor], Tensor]
V = TypeVar("V")
SiteSpec = str | Site
Model = LoadedModel | nn.Module | SiteLocator  # a language model, any torch module (module-path sites), or a locator


class _StopForward(Exception):
    """Raised by a read hook after the deepest requested site to skip the rest of the forward pass."""


# --- locating sites ------------------------------------------------------------------------------


def resolve_sites(lm: Model, sites: SiteSpec | Iterable[SiteSpec]) -> list[Site]:
    """Parse site names, check them against the model, return them in forward order (module sites: as given)."""
    if isinstance(sites, str | Site):
        sites = [sites]
    where = locator_for(lm)
    parsed = [where.parse(s) for s in sites]
    if not parsed:
        raise ValueError("no sites given; name at least one, e.g. 'resid_pre.3'")
    return sorted(dict.fromkeys(parsed), key=lambda s: s.order)


def track_positions(lm: Model) -> PositionTracker:
    """A tracker of token positions for every forward call (call `.remove()` when done)."""
    return locator_for(lm).track_positions()


def _register_read(module: nn.Module, phase: str, fn: Callable[[Tensor], None]):
    if phase == "pre":
        return module.register_forward_pre_hook(
            lambda m, args, kwargs: fn(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
    return module.register_forward_hook(lambda m, args, out: fn(out[0] if isinstance(out, tuple) else out))


def _register_edit(module: nn.Module, phase: str, fn: Edit):
    if phase == "pre":

        def pre_hook(m, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def post_hook(m, args, out):
        if isinstance(out, tuple):
            return (fn(out[0]), *out[1:])
        return fn(out)

    return module.register_forward_hook(post_hook)


def _register_stream_edit(where: SiteLocator, site: Site, fn: Edit) -> list:
    """Edit the residual stream at a site (for resid_mid: through the attention write)."""
    if site.kind != "resid_mid":
        return [_register_edit(*where.locate(site), fn)]
    assert site.layer is not None
    slot: dict[str, Tensor] = {}
    keep = _register_read(where.block(site.layer), "pre", lambda h: slot.__setitem__("pre", h))

    def through_attn(out: Tensor) -> Tensor:
        pre = slot.pop("pre")
        return fn(pre + out) - pre

    edit = _register_edit(where.locate(Site("attn_out", site.layer))[0], "post", through_attn)
    return [keep, edit]


@contextmanager
def _hooks(handles_factory: Callable[[list], None]) -> Iterator[None]:
    handles: list = []
    try:
        handles_factory(handles)
        yield
    finally:
        for h in handles:
            h.remove()


# --- read ----------------------------------------------------------------------------------------


class ActivationCache(dict):
    """Site name -> activation of the latest forward call; `steps(site)` keeps every call. Activations are
    kept on one device (`device`, the model's input device), also when the model is split over several."""

    def __init__(self, device: torch.device | None = None) -> None:
        super().__init__()
        self.device = device
        self._steps: dict[str, list[Tensor]] = {}

    def _record(self, name: str, value: Tensor) -> None:
        value = value.detach() if self.device is None else value.detach().to(self.device)
        self[name] = value
        self._steps.setdefault(name, []).append(value)

    def steps(self, site: SiteSpec) -> list[Tensor]:
        """All activations recorded at a site, one per forward call."""
        return self._steps[str(site)]

    def sequence(self, site: SiteSpec) -> Tensor:
        """Activations of a cached generation joined along positions: [B, prompt + new, d]."""
        return torch.cat(self._steps[str(site)], dim=1)


@contextmanager
def read(
    lm: Model,
    sites: SiteSpec | Iterable[SiteSpec],
    reduce: Callable[[str, Tensor], None] | None = None,
    stop_after_deepest: bool = False,
) -> Iterator[ActivationCache]:
    """Record activations at sites during any forward calls inside the block.

    With `reduce(site_name, activation)`, activations are handed over instead of kept.

    With `stop_after_deepest=True` THE BLOCK ENDS AT ITS FIRST FORWARD CALL: once every site has been
    read, the forward pass is cut by an exception that leaves the model call *and the rest of the
    block*; it is absorbed when the block exits. So put exactly one forward call in such a block, as
    its last statement, and use the cache after the block (`capture` does just that). A second forward
    call inside the same block (possible only if something caught the stop) raises a RuntimeError, and
    so does a block that ends normally after the stop was caught inside it.
    """
    where = locator_for(lm)
    parsed = resolve_sites(where, sites)
    cache = ActivationCache(where.device())
    unread = {str(s) for s in parsed}
    stopped = False

    def reader(site: Site) -> Callable[[Tensor], None]:
        name = str(site)
        sink = (lambda t: reduce(name, t)) if reduce is not None else (lambda t: cache._record(name, t))
        if not stop_after_deepest:
            return sink

        def sink_and_stop(t: Tensor) -> None:
            nonlocal stopped
            if stopped:
                raise RuntimeError(_ALREADY_STOPPED)
            sink(t)
            unread.discard(name)
            if not unread:
                stopped = True
                raise _StopForward

        return sink_and_stop

    def install(handles: list) -> None:
        for site in parsed:
            handles.append(_register_read(*where.locate(site), reader(site)))

    try:
        with _hooks(install):
            yield cache
    except _StopForward:
        return
    if stopped:  # the stop was caught inside the block, so the model call (and the code after it) went on
        raise RuntimeError(_STOP_CAUGHT)


_ALREADY_STOPPED = (
    "read(..., stop_after_deepest=True) already stopped after the deepest site in this block's first forward "
    "call; such a block ends at its first forward call: use one block per forward call, or stop_after_deepest=False"
)
_STOP_CAUGHT = (
    "read(..., stop_after_deepest=True) cut the forward pass but something inside the block caught the stop "
    "(an `except Exception` around the model call?); such a block ends at its first forward call: put the "
    "model call last in the block and let the stop through, or pass stop_after_deepest=False"
)


def capture(
    lm: Model, inputs: Mapping[str, Tensor] | Tensor, sites: SiteSpec | Iterable[SiteSpec]
) -> dict[str, Tensor]:
    """One forward pass that returns the activations at `sites` and stops after the deepest one.

    A plain torch module is called as `module(inputs)`.
    """
    where = locator_for(lm)
    with torch.no_grad(), read(where, sites, stop_after_deepest=True) as cache:
        where.forward(inputs)
    return dict(cache)


# --- edits ---------------------------------------------------------------------------------------


def _as_vector(where: SiteLocator, site: Site, value, allow_positionwise: bool) -> Tensor:
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"vector for {site} must be a tensor, got {type(value).__name__}") from exc
    if not value.is_floating_point():
        raise TypeError(f"vector for {site} must have a floating dtype, got {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise BadNumberError(f"vector for {site} holds NaN or infinite values; refusing to add it")
    return where.check_vector(site, value, allow_positionwise)


def _parse_mapping(where: SiteLocator, mapping: Mapping[SiteSpec, V]) -> list[tuple[Site, V]]:
    """(site, value) pairs of a site-keyed mapping, validated, in forward order."""
    if not mapping:
        raise ValueError("nothing given; pass {site: value}, e.g. {'resid_pre.3': vector}")
    pairs: dict[Site, V] = {}
    for key, value in mapping.items():
        site = where.parse(key)
        if site in pairs:
            raise ValueError(f"site {site} is given twice")
        pairs[site] = value
    return sorted(pairs.items(), key=lambda kv: kv[0].order)


@contextmanager
def edit(lm: Model, edits: Mapping[SiteSpec, Edit]) -> Iterator[None]:
    """Apply `fn(activation) -> new activation` at each site during forward calls in the block."""
    where = locator_for(lm)
    pairs = _parse_mapping(where, edits)

    def install(handles: list) -> None:
        for site, fn in pairs:
            handles.extend(_register_stream_edit(where, site, fn))

    with _hooks(install):
        yield


@contextmanager
def add(
    lm: Model,
    vectors: Mapping[SiteSpec, Tensor],
    coefficient: float = 1.0,
    positions: str | Tensor = "all",
) -> Iterator[None]:
    """Add `coefficient * vector` at each site, at the given positions.

    positions: "all", "prompt", "front" (ActAdd: vector row i at the i-th real prompt token;
    vector shape [T, d]), "last_prompt", "generated", or a bool mask [batch, seq] over input
    columns. Right under left padding and KV-cached generation. Two additions at a site add up.
    On a plain torch module only "all" applies (every forward call, every spatial position).
    """
    positions = validate_positions(positions)
    coefficient = check_coefficient(coefficient)
    where = locator_for(lm)
    needs_tracker = not (isinstance(positions, str) and positions == "all")
    with ExitStack() as stack:
        tracker = where.track_positions() if needs_tracker else None  # a plain module refuses positions here
        if tracker is not None:
            stack.callback(tracker.remove)
        pairs = _parse_mapping(where, vectors)
        front = isinstance(positions, str) and positions == "front"
        sites = [s for s, _ in pairs]
        values = [_as_vector(where, s, v, allow_positionwise=front) * float(coefficient) for s, v in pairs]
        for site, vec in zip(sites, values, strict=True):
            target = Site("attn_out", site.layer) if site.kind == "resid_mid" else site
            module, phase = where.locate(target)
            stack.enter_context(_hooks(_installer(module, phase, _adder(vec, positions, tracker))))
        yield


def _installer(module: nn.Module, phase: str, fn: Edit) -> Callable[[list], None]:
    return lambda handles: handles.append(_register_edit(module, phase, fn))


def _adder(vec: Tensor, positions, tracker: PositionTracker | None) -> Edit:
    """Adds `vec` (moved to each activation's device: a model split over devices has sites on several)."""
    if tracker is None:
        return lambda h: h + _broadcast(vec, h).to(h.device)

    def add_at_positions(h: Tensor) -> Tensor:
        state: PositionState = tracker.require()
        front_len = vec.shape[0] if vec.dim() == 2 else None
        w = position_weights(positions, state, front_len)
        if h.shape[0] == 1 < w.shape[0]:  # one activation shared by the batch (GPT-2's pos_embed): one per row
            h = h.expand(w.shape[0], *h.shape[1:])
        if w.shape != h.shape[:2]:
            raise RuntimeError(f"position weights {tuple(w.shape)} do not match activations {tuple(h.shape)}")
        if vec.dim() == 2:  # position-wise: row i goes to real token i
            rows = state.index.clamp(0, vec.shape[0] - 1)
            delta = vec[rows.to(vec.device)]
        else:
            delta = vec
        return h + delta.to(h.device) * w.unsqueeze(-1).to(device=h.device, dtype=h.dtype)

    return add_at_positions


def _broadcast(vec: Tensor, h: Tensor) -> Tensor:
    """`vec` shaped to add to `h` [B, ...]: trailing axes as they are, or a channel vector [C] over [B, C, ...]."""
    if vec.shape == h.shape[h.dim() - vec.dim() :]:
        return vec
    if vec.dim() == 1 and h.dim() > 2 and h.shape[1] == vec.shape[0]:
        return vec.view(-1, *([1] * (h.dim() - 2)))
    raise ValueError(
        f"a vector of shape {tuple(vec.shape)} does not fit an activation of shape {tuple(h.shape)}; give the "
        f"activation's shape without the batch axis {tuple(h.shape[1:])} or one value per channel [{h.shape[1]}]"
    )


@contextmanager
def replace(lm: Model, values: Mapping[SiteSpec, Tensor | Edit]) -> Iterator[None]:
    """Replace the activation at each site by a tensor of the same shape, or by `fn(activation)`.

    At `attn_in.{l}` / `mlp_in.{l}` only that sublayer's input changes; the stream does not.
    """
    edits: dict[SiteSpec, Edit] = {}
    for site, value in values.items():
        edits[site] = value if callable(value) else _replacer(str(site), value)
    with edit(lm, edits):
        yield


def _replacer(name: str, value: Tensor) -> Edit:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"replacement for {name} must be a floating tensor or a function")

    def swap(h: Tensor) -> Tensor:
        if value.shape != h.shape:
            raise ValueError(
                f"replacement for {name} has shape {tuple(value.shape)} but the activation has {tuple(h.shape)}"
            )
        return value.to(device=h.device, dtype=h.dtype)

    return swap


def residual_write_sites(lm: LoadedModel) -> list[str]:
    """Every site that writes into the residual stream: the embedding and each sublayer output."""
    return residual_write_names(lm.n_layers, bool(lm.adapter.pos_embed))


@contextmanager
def project_out(lm: Model, direction: Tensor, sites: SiteSpec | Iterable[SiteSpec] | None = None) -> Iterator[None]:
    """Remove the component along `direction` at the given sites (default: every residual write).

    With the default, the residual stream is orthogonal to the direction everywhere. On a plain torch
    module name the sites; a channel direction [C] is removed at every spatial position.
    """
    where = locator_for(lm)
    unit = _as_vector(where, Site("direction"), direction, allow_positionwise=False)
    norm = unit.norm()
    if norm == 0:
        raise ValueError("cannot project out a zero direction")
    unit = unit / norm
    names = where.residual_writes() if sites is None else [str(s) for s in resolve_sites(where, sites)]

    def remove(h: Tensor) -> Tensor:
        u = _broadcast(unit, h).to(h.device)
        if u.dim() == 1:
            return h - (h @ u).unsqueeze(-1) * u
        dims = tuple(h.dim() - u.dim() + i for i, n in enumerate(u.shape) if n > 1)
        return h - (h * u).sum(dims, keepdim=True) * u

    with edit(where, dict.fromkeys(names, remove)):
        yield

