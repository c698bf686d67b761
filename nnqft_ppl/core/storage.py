"""Local, embedded storage: xarray objects to zarr / netCDF, written atomically.

A store is first written next to its destination and then renamed into place, so an
interrupted write never leaves a half-written store where a finished one (or nothing) was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

from .validation import check_output_path

__all__ = ["write_store", "open_store", "write_text", "to_json"]


def _engine(path: Path) -> str:
    return "h5netcdf" if path.suffix == ".nc" else "zarr"


def write_store(obj: xr.Dataset | xr.DataTree, path) -> Path:
    """Write a Dataset or DataTree to ``path`` (``.nc``: netCDF, otherwise zarr), atomically."""
    path = check_output_path(path)
    _remove_stale_partials(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        if _engine(path) == "zarr":
            obj.to_zarr(tmp, mode="w", consolidated=False)
        else:
            obj.to_netcdf(tmp, engine="h5netcdf")
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()
    return path


def _remove_stale_partials(path: Path) -> None:
    """Remove temporary stores a killed writer (SIGKILL: no cleanup ran) left next to ``path``."""
    for stale in path.parent.glob(f".{path.name}.*.partial"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def open_store(path, tree: bool = False) -> xr.Dataset | xr.DataTree:
    """Load (into memory) what :func:`write_store` wrote; ``tree=True`` for a DataTree."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no store at {str(path)!r}")
    kwargs = {"engine": _engine(path)}
    if kwargs["engine"] == "zarr":
        kwargs["consolidated"] = False
    if tree:
        return xr.open_datatree(path, **kwargs).load()
    with xr.open_dataset(path, **kwargs) as ds:
        return ds.load()


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file renamed into place)."""
    path = check_output_path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _json_safe(obj):
    """Plain JSON values: NaN and inf become null, NumPy scalars and arrays become Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):  # NumPy arrays and scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(obj, indent: int | None = 2) -> str:
    """Valid JSON (RFC 8259) for ``obj``: NaN / inf are written as ``null``, never ``NaN``."""
    return json.dumps(_json_safe(obj), indent=indent, allow_nan=False)
