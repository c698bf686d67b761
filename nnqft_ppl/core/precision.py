"""Float64 without surprises: the library's entry points compute in float64 locally.

Connected correlators are small differences of large moments, and the theory (kernels,
quadrature, Feynman integrals) is checked to ~1e-10, so the library needs float64. It does not
switch JAX's global configuration when imported: a user's own float32 JAX or optax code in the
same process stays float32. Instead every public entry point runs inside
``jax.enable_x64(True)`` (decorator :func:`float64`), which is thread-local and part of JAX's
compilation cache key, so jit-compiled functions are traced once per precision.

Users who want float64 everywhere call :func:`enable_x64` once (as with
``numpyro.enable_x64()``).
"""

from __future__ import annotations

import functools

import jax

__all__ = ["float64", "enable_x64"]


def float64(function):
    """Decorator: run ``function`` with 64-bit JAX types, whatever the global setting.

    Example:
        >>> @float64
        ... def kernel_sum(X): return jnp.sum(X)      # float64 inside, even in float32 code
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with jax.enable_x64(True):
            return function(*args, **kwargs)

    return wrapper


def enable_x64(use_x64: bool = True) -> None:
    """Switch JAX's *global* default to 64-bit types (an explicit choice, like NumPyro's)."""
    jax.config.update("jax_enable_x64", bool(use_x64))
