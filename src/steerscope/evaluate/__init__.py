"""Evaluation: metrics, statistics, result stores."""
