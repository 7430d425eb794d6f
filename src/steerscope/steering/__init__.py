"""Steering: the Intervention contract, steering vectors and their files, contrast pairs, the
direction-finding methods (as functions of activations and of a model) and steered generation."""

from .contract import Intervention
from .generate import steered_completions
from .methods import (
    actadd,
    mean_diff,
    mean_diff_direction,
    pca,
    pca_direction,
    probe,
    probe_direction,
    random_direction,
)
from .pairs import ContrastPair, PairDataError, load_pairs
from .vector import SteeringVector, VectorFileError, VectorMismatchError

__all__ = [
    "ContrastPair",
    "Intervention",
    "PairDataError",
    "SteeringVector",
    "VectorFileError",
    "VectorMismatchError",
    "actadd",
    "load_pairs",
    "mean_diff",
    "mean_diff_direction",
    "pca",
    "pca_direction",
    "probe",
    "probe_direction",
    "random_direction",
    "steered_completions",
]
