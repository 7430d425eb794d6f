"""Depth structure: residual norm growth and the effective layer horizon."""
