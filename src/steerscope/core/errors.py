"""The root of steerscope's own error types."""

from __future__ import annotations

__all__ = ["SteerscopeError"]


class SteerscopeError(Exception):
    """An expected failure whose message says what is wrong and how to fix it.

    Every error type steerscope raises for bad input or an unusable file subclasses this (keeping its
    built-in base, e.g. `ValueError`), so `except SteerscopeError` catches them all and the command line
    prints the message as one line instead of a traceback.
    """
