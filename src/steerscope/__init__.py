"""steerscope: activation engineering and depth analysis for neural networks."""

from ._version import __version__
from .core.adapters import SUPPORTED_MODEL_TYPES, UnsupportedArchitectureError
from .core.hooks import (
    ActivationCache,
    add,
    capture,
    edit,
    mean_activations,
    project_out,
    read,
    replace,
    residual_write_sites,
)
from .core.models import LoadedModel, ModelLoadError, load_model
from .core.sites import Site, SiteError, parse_site

__all__ = [
    "ActivationCache",
    "LoadedModel",
    "ModelLoadError",
    "SUPPORTED_MODEL_TYPES",
    "Site",
    "SiteError",
    "UnsupportedArchitectureError",
    "__version__",
    "add",
    "capture",
    "edit",
    "load_model",
    "mean_activations",
    "parse_site",
    "project_out",
    "read",
    "replace",
    "residual_write_sites",
]
