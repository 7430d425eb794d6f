"""Sparse autoencoders: the model, SAELens files, training, features from contrast pairs, steering by
feature (clamp a latent, add its decoder row) and the SAE methods sae_clamp / sae_add."""

from .features import find_features, rank_latents, text_latents, top_activating
from .methods import fit_sae_add, fit_sae_clamp
from .model import SAEConfig, SparseAutoencoder
from .saelens import SAEFileError, load_saelens, save_saelens
from .steer import SAEClamp, sae_add_vector, sae_clamp
from .train import SAETrainConfig, train_sae

__all__ = [
    "SAEClamp",
    "SAEConfig",
    "SAEFileError",
    "SparseAutoencoder",
    "SAETrainConfig",
    "find_features",
    "fit_sae_add",
    "fit_sae_clamp",
    "load_saelens",
    "rank_latents",
    "sae_add_vector",
    "sae_clamp",
    "save_saelens",
    "text_latents",
    "top_activating",
    "train_sae",
]
