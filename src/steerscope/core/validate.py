"""Checks of user-given numbers: finite reals and whole numbers in range, refused with one line that names them."""

from __future__ import annotations

import math
import numbers

from .errors import SteerscopeError

__all__ = ["MAX_COEFFICIENT", "BadNumberError", "check_coefficient", "finite", "whole"]

# The largest |coefficient| accepted anywhere a coefficient enters (library, CLI, configs, playground, API). Typical
# steering coefficients are within +-100; far beyond this the residual stream overflows and the text comes out empty.
MAX_COEFFICIENT = 10_000.0


class BadNumberError(SteerscopeError, ValueError):
    """A number that is not finite, not a number at all, or out of its allowed range."""


def finite(value: object, what: str, low: float | None = None, high: float | None = None) -> float:
    """`value` as a float, refused when it is a bool, not a real number, NaN, infinite or outside [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadNumberError(f"{what} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise BadNumberError(f"{what} must be a finite number, got {number}")
    if (low is not None and number < low) or (high is not None and number > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise BadNumberError(f"{what} must be in [{lo}, {hi}], got {number:g}")
    return number


def whole(value: object, what: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int, refused when it is a bool, not a whole number, or outside low..high."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BadNumberError(f"{what} must be a whole number, got {value!r}")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        raise BadNumberError(f"{what} must be {' and '.join(b for b in bounds if b)}, got {number}")
    return number


def check_coefficient(value: object, what: str = "the coefficient") -> float:
    """A steering coefficient (or clamp value) as a float: finite and within +-MAX_COEFFICIENT, refused otherwise
    with the bound and why it exists. The one check every entry point calls (library, CLI, configs, servers)."""
    number = finite(value, what)
    if abs(number) > MAX_COEFFICIENT:
        raise BadNumberError(
            f"{what} must be between {-MAX_COEFFICIENT:g} and {MAX_COEFFICIENT:g}, got {number:g}: it multiplies the "
            "steering vector, and far beyond this the model's activations overflow and it writes nothing"
        )
    return number
