"""Run zoo specs resumably and store their results (``nnqft reproduce`` / ``nnqft run``).

Layout of an output folder ``DIR``::

    DIR/results/<spec>.zarr        one DataTree per finished spec: tables + claims (attrs)
    DIR/posteriors/<spec>_<key>.nc ArviZ DataTrees (netCDF) of the spec's posteriors
    DIR/ensembles/*.zarr           cached correlator statistics, shared between specs
    DIR/index.md, index.html, figures/, tables/   the report (:mod:`nnqft_ppl.report`)

Every store is written atomically (:func:`nnqft_ppl.storage.write_store`); a spec's results are
written last, so a spec counts as finished exactly when its results store exists with the same
settings (a hash of the spec at its scale). An interrupted run, rerun, skips finished specs and
reuses the ensembles already sampled by the unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import xarray as xr

from .checks import check_output_path
from .specs import Spec, load_spec
from .storage import open_store, write_store
from .studies import run_study

__all__ = ["ZOO", "MODELS_DIR", "zoo_paths", "run_spec", "reproduce", "load_result"]

#: Folder of the shipped specs (repository checkout).
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: The specs ``nnqft reproduce`` runs, in report order.
ZOO = (
    "falloff_gauss",
    "falloff_erf",
    "falloff_relu",
    "falloff_gauss_paper",
    "coupling_gauss",
    "coupling_erf",
    "coupling_relu",
    "rg_relu",
    "rg_gauss",
    "sixpoint_erf",
    "sixpoint_gauss",
    "sixpoint_relu",
    "symmetry_erf",
    "symmetry_gauss",
)


def zoo_paths(models_dir=None) -> list[Path]:
    """Paths of the zoo's specs (``models/<name>.toml``)."""
    folder = Path(models_dir) if models_dir is not None else MODELS_DIR
    return [folder / f"{name}.toml" for name in ZOO]


def _spec_hash(spec: Spec, scale: str) -> str:
    text = json.dumps([spec.at_scale(scale).model_dump(mode="json"), scale], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_path(out, name: str) -> Path:
    return Path(out) / "results" / f"{name}.zarr"


def load_result(path) -> xr.DataTree:
    """A stored spec result (DataTree: ``attrs`` with claims/notes JSON, one child per table)."""
    return open_store(path, tree=True)


def is_finished(out, spec: Spec, scale: str) -> bool:
    path = result_path(out, spec.name)
    if not path.exists():
        return False
    try:
        return load_result(path).attrs.get("spec_hash") == _spec_hash(spec, scale)
    except (OSError, ValueError, KeyError):
        return False


def run_spec(path, out, scale: str = "default", progress: bool = False, command: str = "") -> dict:
    """Run one spec file and store its results under ``out``; skip it when already finished.

    Returns ``{"name", "skipped", "seconds"}``.
    """
    spec = load_spec(path)
    spec.at_scale(scale)  # unknown scale: SpecError now, before any work
    out = Path(out)
    if is_finished(out, spec, scale):
        return {"name": spec.name, "skipped": True, "seconds": 0.0}
    check_output_path(result_path(out, spec.name))
    start = time.perf_counter()
    result = run_study(spec, scale, cache=out / "ensembles", progress=progress)
    seconds = time.perf_counter() - start
    posterior_files = {}
    for key, idata in result.posteriors.items():
        target = out / "posteriors" / f"{spec.name}_{key}.nc"
        write_store(idata, target)
        posterior_files[key] = str(target.relative_to(out))
    resolved = spec.at_scale(scale)
    attrs = {
        "name": spec.name,
        "title": spec.title,
        "study": spec.study,
        "description": spec.description,
        "scale": scale,
        "spec_file": str(path),
        "spec_toml": Path(path).read_text(),
        "spec_hash": _spec_hash(spec, scale),
        "ensemble_sizes": json.dumps({str(k): v for k, v in resolved.ensemble_sizes().items()}),
        "command": command or f"nnqft run {path} --scale {scale}",
        "claims": result.claims_json(),
        "notes": json.dumps(result.notes),
        "posteriors": json.dumps(posterior_files),
        "seconds": seconds,
    }
    tree = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
    for name, table in result.tables.items():
        tree[name] = xr.DataTree(dataset=table)
    write_store(tree, result_path(out, spec.name))
    return {"name": spec.name, "skipped": False, "seconds": seconds}


def reproduce(out, scale: str = "default", paths=None, progress: bool = False, log=print) -> list:
    """Run every spec in ``paths`` (default: the zoo) into ``out``, then write the report.

    Returns the list of :func:`run_spec` records. Finished specs are reused (resumable).
    """
    from .report import build_report

    out = Path(out)
    check_output_path(out / "results" / "probe")
    paths = list(paths) if paths is not None else zoo_paths()
    for p in paths:  # validate everything before spending compute
        load_spec(p).at_scale(scale)
    records = []
    for i, p in enumerate(paths, 1):
        rec = run_spec(p, out, scale, progress, command=f"nnqft reproduce --scale {scale}")
        state = "reused" if rec["skipped"] else f"{rec['seconds']:.1f} s"
        log(f"[{i}/{len(paths)}] {rec['name']}: {state}")
        records.append(rec)
    build_report(out)
    return records
