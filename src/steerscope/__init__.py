"""steerscope: activation engineering and depth analysis for neural networks.

`import steerscope as ss` is enough: load a model, read and edit its sites, fit any method of the
catalogue (`ss.fit(name, lm, pairs, sites)`, `ss.METHODS`) and apply what it returns.
"""

from ._version import __version__
from .core.adapters import SUPPORTED_MODEL_TYPES, UnsupportedArchitectureError
from .core.errors import CheckpointError, ConfigError, NoDirectionError, SteerscopeError
from .core.extract import mean_activations, text_vectors
from .core.hooks import ActivationCache, add, capture, edit, project_out, read, replace, residual_write_sites
from .core.loading import load_model
from .core.models import LoadedModel, ModelLoadError
from .core.runs import OutputExistsError, RunSettingsError
from .core.sites import Site, SiteError, parse_site
from .core.weights import OrthogonalizationError
from .evaluate.store import SettingsMismatchError
from .methods import METHODS, MethodError, MethodSpec, fit, method_names
from .sae.model import SparseAutoencoder
from .sae.saelens import SAEFileError, load_saelens
from .sae.steer import SAEClamp
from .steering.contract import Intervention
from .steering.pairs import ContrastPair, PairDataError, load_pairs
from .steering.vector import SteeringVector, VectorFileError, VectorMismatchError
from .vllm import Steer, VllmEngine, VllmMissingError, VllmUnsupportedError
from .vllm.completions import steered_completions

__all__ = [
    "METHODS",
    "SUPPORTED_MODEL_TYPES",
    "ActivationCache",
    "CheckpointError",
    "ConfigError",
    "ContrastPair",
    "Intervention",
    "LoadedModel",
    "MethodError",
    "MethodSpec",
    "ModelLoadError",
    "NoDirectionError",
    "OrthogonalizationError",
    "OutputExistsError",
    "PairDataError",
    "RunSettingsError",
    "SAEClamp",
    "SAEFileError",
    "SettingsMismatchError",
    "Site",
    "SiteError",
    "SparseAutoencoder",
    "Steer",
    "SteerscopeError",
    "SteeringVector",
    "UnsupportedArchitectureError",
    "VectorFileError",
    "VectorMismatchError",
    "VllmEngine",
    "VllmMissingError",
    "VllmUnsupportedError",
    "__version__",
    "add",
    "capture",
    "edit",
    "fit",
    "load_model",
    "load_pairs",
    "load_saelens",
    "mean_activations",
    "method_names",
    "parse_site",
    "project_out",
    "read",
    "replace",
    "residual_write_sites",
    "steered_completions",
    "text_vectors",
]
