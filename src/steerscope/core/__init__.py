"""Core: models and their adapters, sites, positions, hooks, extraction, weight edits, run folders, io.

Knows nothing about experiments.
"""

from .adapters import SUPPORTED_MODEL_TYPES, UnsupportedArchitectureError
from .errors import SteerscopeError
from .extract import mean_activations, site_activations, text_vectors
from .forward import run_forward
from .generate import generate_text
from .hooks import ActivationCache, add, capture, edit, project_out, read, replace, residual_write_sites
from .loading import load_model
from .models import LoadedModel, ModelLoadError
from .runs import RunFolder, RunSettingsError
from .sites import Site, SiteError, parse_site
from .weights import OrthogonalizationError, orthogonalize

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "ActivationCache",
    "LoadedModel",
    "ModelLoadError",
    "OrthogonalizationError",
    "RunFolder",
    "RunSettingsError",
    "Site",
    "SiteError",
    "SteerscopeError",
    "UnsupportedArchitectureError",
    "add",
    "capture",
    "edit",
    "generate_text",
    "load_model",
    "mean_activations",
    "orthogonalize",
    "parse_site",
    "project_out",
    "read",
    "replace",
    "residual_write_sites",
    "run_forward",
    "site_activations",
    "text_vectors",
]
