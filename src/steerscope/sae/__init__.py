"""Sparse autoencoders: train, load (SAELens layout), find features from contrast pairs, steer by feature."""
