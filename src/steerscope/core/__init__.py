"""Core: model loading, adapters, sites, positions and hooks. Knows nothing about experiments."""
