"""Run zoo specs resumably and store their results (``nnqft reproduce`` / ``nnqft run``).

Layout of an output folder ``DIR``::

    DIR/results/<spec>.zarr        one SpecResult per finished spec (nnqft_ppl.zoo.results)
    DIR/posteriors/<spec>_<key>.nc ArviZ DataTrees (netCDF) of the spec's posteriors
    DIR/ensembles/*.zarr           cached correlator statistics, shared between specs
    DIR/index.md, index.html, figures/, tables/   the report (:mod:`nnqft_ppl.zoo.report`)

Every store is written atomically (:func:`nnqft_ppl.core.storage.write_store`); a spec's result
is written last, so a spec counts as finished exactly when its result store exists with the
same settings (a hash of the spec at its scale). An interrupted run, rerun, skips finished
specs and reuses the ensembles already sampled by the unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import NamedTuple

from ..core.precision import float64
from ..core.storage import write_store
from ..core.validation import check_output_path
from . import studies as _studies  # noqa: F401  (registers the study kinds)
from .report import build_report
from .results import SpecResult, StudyResult, load_result, result_path
from .specs import STUDIES, ZOO, Spec, load_spec, resolve_spec, spec_display_name, zoo_spec_path
from .studies.common import dask_client

__all__ = ["SpecRun", "run_study", "run_spec", "reproduce", "zoo_paths"]


class SpecRun(NamedTuple):
    """What :func:`run_spec` did: the spec's ``name``, whether it was ``skipped`` (already
    finished) and how many ``seconds`` it took."""

    name: str
    skipped: bool
    seconds: float


def zoo_paths() -> list[Path]:
    """Paths of the zoo's specs (shipped with the package), in report order."""
    return [zoo_spec_path(name) for name in ZOO]


@float64
def run_study(spec: Spec, scale: str = "default", cache=None, progress: bool = False,
              client=None):  # fmt: skip
    """Run ``spec`` at ``scale`` -> :class:`~nnqft_ppl.zoo.results.StudyResult`; ``cache``: a
    folder for reusable ensembles (or None); ``client``: a ``dask.distributed.Client`` to
    sample the ensembles on (None: this process; the results are the same)."""
    runner = STUDIES.get_or_raise(spec.study)
    with dask_client(client):
        result = runner(spec.at_scale(scale), cache=cache, progress=progress)
    if not isinstance(result, StudyResult):
        raise TypeError(f"study {spec.study!r} returned {type(result).__name__}, not StudyResult")
    return result


def _spec_hash(spec: Spec, scale: str) -> str:
    text = json.dumps([spec.at_scale(scale).model_dump(mode="json"), scale], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_finished(out, spec: Spec, scale: str) -> bool:
    """True when ``out`` holds the result of ``spec`` at ``scale`` with the same settings."""
    path = result_path(out, spec.name)
    if not path.exists():
        return False
    try:
        return load_result(path).spec_hash == _spec_hash(spec, scale)
    except (OSError, ValueError, KeyError):
        return False


def run_spec(
    spec, out, scale: str = "default", progress: bool = False, command: str = "", client=None
) -> SpecRun:
    """Run one spec (a zoo name or a TOML path) into ``out``; skip it when already finished.
    ``client``: a ``dask.distributed.Client`` to sample on (None: this process)."""
    path = resolve_spec(spec)
    spec = load_spec(path)
    spec.at_scale(scale)  # unknown scale: SpecError now, before any work
    out = Path(out)
    if is_finished(out, spec, scale):
        return SpecRun(spec.name, True, 0.0)
    check_output_path(result_path(out, spec.name))
    start = time.perf_counter()
    result = run_study(spec, scale, cache=out / "ensembles", progress=progress, client=client)
    seconds = time.perf_counter() - start
    posterior_files = {}
    for key, idata in result.posteriors.items():
        target = out / "posteriors" / f"{spec.name}_{key}.nc"
        write_store(idata, target)
        posterior_files[key] = str(target.relative_to(out))
    display = spec_display_name(path)
    SpecResult(
        name=spec.name,
        title=spec.title,
        study=spec.study,
        description=spec.description,
        scale=scale,
        spec_file=display,
        spec_toml=path.read_text(),
        spec_hash=_spec_hash(spec, scale),
        command=command or f"nnqft run {display} --scale {scale}",
        seconds=seconds,
        ensemble_sizes=spec.at_scale(scale).ensemble_sizes(),
        claims=result.claims,
        notes=result.notes,
        posteriors=posterior_files,
        tables=result.tables,
    ).save(out)
    return SpecRun(spec.name, False, seconds)


def reproduce(
    out, scale: str = "default", specs=None, progress: bool = False, log=print, client=None
) -> list[SpecRun]:
    """Run every spec of ``specs`` (names or paths; default: the zoo) into ``out``, then write
    the report. Finished specs are reused (resumable). ``client``: a Dask client to sample
    the ensembles on (None: this process)."""
    out = Path(out)
    check_output_path(out / "results" / "probe")
    paths = [resolve_spec(s) for s in (specs if specs is not None else ZOO)]
    for p in paths:  # validate everything before spending compute
        load_spec(p).at_scale(scale)
    records = []
    for i, p in enumerate(paths, 1):
        rec = run_spec(p, out, scale, progress, command=f"nnqft reproduce --scale {scale}",
                       client=client)  # fmt: skip
        state = "reused" if rec.skipped else f"{rec.seconds:.1f} s"
        log(f"[{i}/{len(paths)}] {rec.name}: {state}")
        records.append(rec)
    build_report(out)
    return records
