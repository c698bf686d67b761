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
import warnings
from pathlib import Path

import xarray as xr

from .validation import check_output_path

__all__ = ["write_store", "open_store", "recover_store", "write_text", "to_json"]


def _engine(path: Path) -> str:
    return "h5netcdf" if path.suffix == ".nc" else "zarr"


def write_store(obj: xr.Dataset | xr.DataTree, path) -> Path:
    """Write a Dataset or DataTree to ``path`` (``.nc``: netCDF, otherwise zarr with consolidated
    metadata), atomically: to a temporary sibling, renamed into place when complete.

    A store being replaced is first renamed aside (one atomic rename), so a process killed at
    any instant leaves either the old or the new store complete; :func:`recover_store` puts an
    old one back when the kill fell between the two renames.
    """
    path = check_output_path(path)
    recover_store(path)
    _remove_stale(path, "partial")
    tag = uuid.uuid4().hex[:8]
    tmp = path.with_name(f".{path.name}.{tag}.partial")
    aside = path.with_name(f".{path.name}.{tag}.old")
    try:
        if _engine(path) == "zarr":
            with warnings.catch_warnings():
                # consolidated metadata (one read opens the store: xr.open_zarr) is not yet in
                # the zarr v3 specification; zarr-python and xarray read it
                warnings.filterwarnings("ignore", "Consolidated metadata", UserWarning)
                obj.to_zarr(tmp, mode="w", consolidated=True)
        else:
            obj.to_netcdf(tmp, engine="h5netcdf")
        if path.exists():
            os.replace(path, aside)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    _remove_stale(path, "old")
    return path


def recover_store(path) -> None:
    """Undo an interrupted replacement: when ``path`` is missing but a store renamed aside by
    :func:`write_store` exists, rename it back (the last complete version)."""
    path = Path(path)
    if path.exists():
        return
    aside = sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime)
    if aside:
        os.replace(aside[-1], path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_stale(path: Path, kind: str) -> None:
    """Remove leftovers of a killed writer (SIGKILL: no clean-up ran) next to ``path``:
    ``partial`` (unfinished new stores) or ``old`` (replaced stores)."""
    for stale in path.parent.glob(f".{path.name}.*.{kind}"):
        _remove(stale)


def open_store(path, tree: bool = False) -> xr.Dataset | xr.DataTree:
    """Load (into memory) what :func:`write_store` wrote; ``tree=True`` for a DataTree."""
    path = Path(path)
    recover_store(path)
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
