"""Steering: direction-finding methods, contrast pairs and steered generation."""
