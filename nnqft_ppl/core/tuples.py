"""Correlators as xarray objects over the ``tuple`` dimension (the one wrapper everyone uses).

A symmetric n-point function of P inputs lives on the ``C(P+n-1, n)`` sorted index multisets
(:func:`~nnqft_ppl.core.multisets.index_multisets`), labelled ``"i,j,k,l"``; covariances between
its entries have dims ``("tuple", "tuple_")``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .multisets import tuple_labels

__all__ = ["tuple_array", "tuple_covariance", "as_tuple_array"]


def tuple_array(
    values, n_inputs: int, order: int, name: str, *, dims=("tuple",), coords=None, **attrs
) -> xr.DataArray:
    """``values`` as a DataArray over ``dims`` (one of them ``tuple``, labelled ``"i,j,k,l"``).

    ``coords`` adds coordinates of the other dims (e.g. ``{"cutoff": L}``); ``attrs`` always
    record the ``order``.
    """
    return xr.DataArray(
        np.asarray(values),
        dims=dims,
        coords={"tuple": tuple_labels(n_inputs, order), **(coords or {})},
        name=name,
        attrs={"order": order, **attrs},
    )


def tuple_covariance(values, n_inputs: int, order: int, name: str, **attrs) -> xr.DataArray:
    """A ``(M, M)`` covariance between the entries of an n-pt function, dims ``(tuple, tuple_)``."""
    labels = tuple_labels(n_inputs, order)
    return xr.DataArray(
        np.asarray(values),
        dims=("tuple", "tuple_"),
        coords={"tuple": labels, "tuple_": labels},
        name=name,
        attrs={"order": order, **attrs},
    )


def as_tuple_array(values, n_inputs: int, order: int, name: str) -> xr.DataArray:
    """Validate a correlator given as xarray over ``tuple`` (other dims broadcast) or as an
    ``(M,)`` array, and return it labelled; the error names ``name`` and the expected size."""
    labels = tuple_labels(n_inputs, order)
    if isinstance(values, xr.DataArray):
        if "tuple" not in values.dims:
            raise ValueError(f"{name} must have a 'tuple' dimension, got dims {values.dims}")
        if values.sizes["tuple"] != len(labels):
            raise ValueError(
                f"{name} has {values.sizes['tuple']} tuples; {n_inputs} inputs at order {order} "
                f"have {len(labels)}"
            )
        return values.assign_coords(tuple=labels)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(labels),):
        raise ValueError(
            f"{name} must have shape ({len(labels)},) (unique {order}-multisets of {n_inputs} "
            f"inputs), got {arr.shape}"
        )
    return xr.DataArray(arr, dims=("tuple",), coords={"tuple": labels}, name=name)
