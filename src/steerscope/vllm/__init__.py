"""vLLM as an engine: per-request steering and activation reads inside vLLM's batches (see engine.py).

Importing this package does not import vLLM; building a `VllmEngine` does, and says how to install it if absent.
"""

from .engine import Completion, Steer, VllmEngine, VllmMissingError, require_vllm
from .plan import VLLM_POSITIONS
from .sites import VLLM_MODEL_TYPES, VLLM_SITE_KINDS, VllmUnsupportedError

__all__ = [
    "VLLM_MODEL_TYPES",
    "VLLM_POSITIONS",
    "VLLM_SITE_KINDS",
    "Completion",
    "Steer",
    "VllmEngine",
    "VllmMissingError",
    "VllmUnsupportedError",
    "require_vllm",
]
