"""The root of steerscope's own error types."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "NoDirectionError", "SteerscopeError"]


class SteerscopeError(Exception):
    """An expected failure whose message says what is wrong and how to fix it.

    Every error type steerscope raises for bad input or an unusable file subclasses this (keeping its
    built-in base, e.g. `ValueError`), so `except SteerscopeError` catches them all and the command line
    prints the message as one line instead of a traceback.
    """


# Errors that runners raise, defined here so that `import steerscope` can offer them without importing the runners
# (and their plotting, Ray and web code); each is re-exported by the module that raises it.


class ConfigError(SteerscopeError, ValueError):
    """A sweep configuration that cannot be run; the message names the key and the fix."""


class NoDirectionError(SteerscopeError, RuntimeError):
    """No candidate direction passed the selection filters; the message shows the scores and what to relax."""


class CheckpointError(SteerscopeError, ValueError):
    """A policy checkpoint that cannot be read."""
