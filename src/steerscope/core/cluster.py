"""Ray, the optional engine that spreads sweep cells or whole models over the workers of a cluster.

Ray is an optional dependency (`pip install 'steerscope[ray]'`); nothing else needs it. `RaySpec` is what a
user asks for (workers, the resources of each, the cluster's address); `connect` joins that cluster, or starts
a local Ray instance with this machine's cores when no address is given, and fails with one clear line when
Ray is missing or the address cannot be reached.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from .errors import SteerscopeError
from .validate import finite, whole

RAY_INSTALL = "pip install 'steerscope[ray]'"
CONNECT_TIMEOUT_S = 5.0


class RayMissingError(SteerscopeError, ImportError):
    """Ray was asked for but is not installed."""


class ClusterUnreachableError(SteerscopeError, ConnectionError):
    """No Ray cluster answers at the address given."""


@dataclass(frozen=True)
class RaySpec:
    """Where and how wide to run on Ray.

    workers: how many actors (0: as many as the cluster's CPUs and GPUs hold at the per-worker requests);
    gpus_per_worker / cpus_per_worker: each worker's Ray resource request (a model split over 2 GPUs: 2);
    address: "" starts a local Ray instance with this machine's cores, "auto" joins the cluster `ray start`
    began on this machine, HOST:PORT (or ray://HOST:PORT) joins that one.
    """

    workers: int = 0
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    address: str = ""

    def __post_init__(self) -> None:
        whole(self.workers, "ray.workers (--workers)", 0)
        finite(self.gpus_per_worker, "ray.gpus_per_worker (--gpus-per-worker)", 0.0)
        finite(self.cpus_per_worker, "ray.cpus_per_worker (--cpus-per-worker)", 0.0)
        if not isinstance(self.address, str):
            raise ValueError(
                f"ray.address (--address) must be a string like 'auto' or 'HOST:PORT', got {self.address!r}"
            )

    def with_address(self, address: str | None) -> RaySpec:
        """The same request with another address (None keeps this one)."""
        return self if address is None else RaySpec(self.workers, self.gpus_per_worker, self.cpus_per_worker, address)


def require_ray() -> Any:
    """The `ray` module, or a RayMissingError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(f"running on Ray needs the ray package, which is not installed: {RAY_INSTALL}") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; None for anything else."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within `timeout` seconds, an address where nothing accepts a connection."""
    where = _host_port(address)
    if where is None:
        raise ClusterUnreachableError(
            f"Ray address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT (e.g. --address 10.0.0.5:6379)"
        )
    try:
        with socket.create_connection(where, timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach a Ray cluster at {address} within {timeout:g} s ({exc.strerror or exc}); start one there "
            f"with `ray start --head --port={where[1]}`, or pass the address `ray start` printed"
        ) from None


def connect(spec: RaySpec) -> bool:
    """Join the cluster of `spec.address` (or start a local instance); True when this call started Ray, so the
    caller shuts it down again. A process already connected keeps its connection."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = spec.address or "local"
    if address not in ("local", "auto"):
        check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="warning")
    except ConnectionError as exc:
        fix = "start one with `ray start --head`" if address == "auto" else "check --address"
        raise ClusterUnreachableError(f"no Ray cluster at {address!r} ({exc}); {fix}") from None
    return True


def worker_count(spec: RaySpec, resources: dict[str, float]) -> int:
    """The workers to start: `spec.workers`, or as many as the cluster's CPUs and GPUs hold (at least one)."""
    if spec.workers:
        return spec.workers
    asks = (("CPU", spec.cpus_per_worker), ("GPU", spec.gpus_per_worker))
    counts = [int(resources.get(kind, 0) // need) for kind, need in asks if need > 0]
    return max(1, min(counts)) if counts else 1
