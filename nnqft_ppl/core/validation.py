"""Input validation shared by the public functions: each error is one line naming what was wrong."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np

__all__ = [
    "check_inputs",
    "check_width",
    "check_positive_float",
    "check_positive_int",
    "check_order",
    "check_choice",
    "check_output_path",
]


def check_inputs(X, d_in: int) -> np.ndarray:
    """``X`` as a float64 array of shape ``(P, d_in)``; 1-d input is accepted when ``d_in == 1``."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"inputs X must be numeric, got {type(X).__name__}: {err}") from None
    if arr.ndim == 1 and d_in == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != d_in or arr.shape[0] == 0:
        raise ValueError(
            f"inputs X must have shape (P, d_in) = (P, {d_in}) with P >= 1, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"inputs X contain NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr


def check_positive_int(value, name: str) -> int:
    """``value`` as a positive Python int, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value, name: str, what: str = "") -> float:
    """``value`` as a finite float > 0, else a one-line ValueError naming ``name`` (``what``:
    an explanation appended to the message, e.g. ``" (box [-L, L]^d)"``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number > 0{what}, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be finite and > 0{what}, got {value!r}")
    return number


def check_width(width) -> int:
    """A network width: a positive integer."""
    return check_positive_int(width, "width")


def check_order(order, max_allowed: int = 8, name: str = "order") -> int:
    """A correlator order: even, ``2 <= order <= max_allowed`` (odd correlators vanish by the
    f -> -f symmetry of the parameter prior)."""
    order = check_positive_int(order, name)
    if order % 2 or order > max_allowed:
        raise ValueError(
            f"{name} must be even and at most {max_allowed} (odd correlators vanish by the "
            f"f -> -f symmetry), got {order}"
        )
    return order


def check_choice(value, allowed, name: str):
    """``value`` if it is one of ``allowed``, else a ValueError listing them."""
    if value not in tuple(allowed):
        raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(map(str, allowed))}")
    return value


def check_output_path(path) -> Path:
    """A writable output location: its parent folder exists (or can be made) and is writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write output {str(path)!r}: {err.strerror}") from None
    probe = parent / f".nnqft-write-test-{path.name}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write output {str(path)!r}: {err.strerror}") from None
    return path
