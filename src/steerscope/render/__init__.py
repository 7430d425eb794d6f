"""Rendering helpers: HTML pages and figure saving. Imports nothing of steerscope and knows no experiment."""

from . import html
from .figures import save_figure

__all__ = ["html", "save_figure"]
