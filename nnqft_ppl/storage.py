"""Local, embedded storage: xarray objects to zarr / netCDF, written atomically.

A store is first written next to its destination and then renamed into place, so an
interrupted write never leaves a half-written store where a finished one (or nothing) was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import xarray as xr

from .checks import check_output_path

__all__ = ["write_store", "open_store"]


def _engine(path: Path) -> str:
    return "h5netcdf" if path.suffix == ".nc" else "zarr"


def write_store(obj: xr.Dataset | xr.DataTree, path) -> Path:
    """Write a Dataset or DataTree to ``path`` (``.nc``: netCDF, otherwise zarr), atomically."""
    path = check_output_path(path)
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
