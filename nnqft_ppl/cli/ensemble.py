"""``nnqft sample`` and ``nnqft correlate``: ensembles into stores that no failure can poison.

Every option is validated before anything is written. A store's settings are written together
with its first finished chunk (never before), work is saved as it goes (``sample``: each chunk;
``correlate``: an atomic checkpoint every 20 s), and a rerun of the same command continues where
it stopped (after Ctrl-C or ``kill -9``) with numbers identical to an uninterrupted run. A
larger ``--n-networks`` extends a finished store: networks n..m come from the same
counter-based streams, with the same batch size, so the result equals one run of m networks.
A store holding a different ensemble is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import typer

from .options import check_store_path, command, fail, parse_widths, with_architecture

__all__ = ["register"]

#: Default seconds between atomic checkpoints of ``correlate`` (``--checkpoint-every``).
CHECKPOINT_SECONDS = 20.0

_OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace a store that holds a different ensemble."
)
_DTYPE = typer.Option("float64", "--dtype", help="float64 or float32 forward pass.")
_SEED = typer.Option(0, "--seed", help="Root seed (network a always gets the same parameters).")


def _ensemble(net, X, width, n_networks, seed, max_order=2, n_batches=1000, dtype="float64",
              estimator="outputs"):  # fmt: skip
    """The :class:`~nnqft_ppl.ensembles.description.Ensemble`, each error naming its option."""
    from ..ensembles.description import Ensemble

    try:
        return Ensemble(net, X, width, n_networks, seed, max_order, n_batches, dtype=dtype,
                        estimator=estimator)  # fmt: skip
    except ValueError as err:
        text = str(err)
        # the field named first ("width must be ...", "unknown dtype ...") is the option
        field = text.removeprefix("unknown ").split()[0]
        fail(text, "--" + field.replace("_", "-"))


def _clear(out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()


# --------------------------------------------------------------------------- sample
@command
@with_architecture
def sample(
    net,
    X,
    width: int = typer.Option(10, "--width", help="Hidden width N."),
    n_networks: int = typer.Option(10_000, "--n-networks", help="Number of networks."),
    seed: int = _SEED,
    dtype: str = _DTYPE,
    out: Path = typer.Option(
        ..., "--out", help="Output store: .zarr (streamed, resumable, extendable) or .nc."
    ),
    overwrite: bool = _OVERWRITE,
):
    """Sample network outputs f(x) of an ensemble and store them (dims network, input)."""
    ensemble = _ensemble(net, X, width, n_networks, seed, dtype=dtype)
    if ensemble.n_networks < 2:
        fail(f"need at least 2 networks, got {n_networks}", "--n-networks")
    out = check_store_path(out)
    if overwrite:
        _clear(out)
    if out.suffix == ".zarr":
        done = _sample_to_zarr(ensemble, out)
    else:
        if out.exists():
            fail(f"{out} exists; give --overwrite to replace it", "--out")
        done = _sample_to_netcdf(ensemble, out)
    typer.echo(f"{done} networks of {ensemble.label} in {out}")


def _store_attrs(ensemble) -> dict:
    """Self-describing store attributes: the ensemble's fields, the architecture flattened."""
    d = ensemble.to_dict()
    arch = d.pop("arch")
    d.pop("X")
    return {f"architecture_{k}": v for k, v in arch.items()} | d


def _stored_ensemble(attrs: dict, inputs: np.ndarray):
    from ..ensembles.description import Ensemble
    from ..networks.architectures import architecture_from_dict

    arch = {
        k.removeprefix("architecture_"): v
        for k, v in attrs.items()
        if k.startswith("architecture_")
    }
    fields = ("width", "n_networks", "seed", "max_order", "n_batches", "batch_size", "dtype")
    # an output store's ensemble accumulates the outputs (stores older than the field say none)
    return Ensemble(architecture_from_dict(arch), inputs, **{k: attrs[k] for k in fields},
                    estimator=attrs.get("estimator", "outputs"))  # fmt: skip


def _sample_to_zarr(ensemble, out: Path) -> int:
    """Stream chunks into ``out/f``; ``attrs['n_complete']`` counts the finished networks."""
    import zarr

    from ..core.progress import progress_bar
    from ..ensembles.sampler import iter_output_chunks

    n, P = ensemble.n_networks, ensemble.n_inputs
    start, group = 0, None
    if out.exists():
        try:
            group = zarr.open_group(out, mode="a")
            old = _stored_ensemble(dict(group.attrs), group["inputs"][:])
            start = int(group.attrs["n_complete"])
        except (KeyError, ValueError, TypeError, FileNotFoundError):
            fail(
                f"{out} is not an output store of `nnqft sample`; choose another --out or "
                "give --overwrite",
                "--out",
            )
        if not old.same_networks(ensemble):
            fail(
                f"{out} holds a different ensemble ({old.label}, seed {old.seed}); choose "
                "another --out or give --overwrite",
                "--out",
            )
        if n < start:
            fail(
                f"{out} already holds {start} networks, more than --n-networks {n}", "--n-networks"
            )
        if n > group["f"].shape[0]:  # extend: same streams, more networks
            group["f"].resize((n, P))
        group.attrs.update(_store_attrs(ensemble) | {"n_complete": start})
    chunks = iter_output_chunks(ensemble, start=start)
    with progress_bar(n - start, f"sampling {ensemble.label}") as advance:
        for lo, f in chunks:
            if group is None:  # settings are written only together with the first chunk
                group = _new_sample_store(ensemble, out, f)
            else:
                group["f"][lo : lo + len(f)] = f
            group.attrs["n_complete"] = lo + len(f)  # only after the data are written
            advance(len(f))
    return n


def _new_sample_store(ensemble, out: Path, first: np.ndarray):
    """Create the store atomically with its first chunk of outputs already in it."""
    import os
    import uuid

    import zarr

    n, P = ensemble.n_networks, ensemble.n_inputs
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    group = zarr.open_group(tmp, mode="w")
    group.create_array("inputs", data=ensemble.X, dimension_names=("input", "dim"))
    f = group.create_array(
        "f",
        shape=(n, P),
        dtype="float64",
        chunks=(min(n, 65536), P),
        fill_value=np.nan,
        dimension_names=("network", "input"),
    )
    f[: len(first)] = first
    group.attrs.update(_store_attrs(ensemble) | {"n_complete": len(first)})
    os.replace(tmp, out)
    return zarr.open_group(out, mode="a")


def _sample_to_netcdf(ensemble, out: Path) -> int:
    import xarray as xr

    from ..core.storage import write_store
    from ..ensembles.sampler import sample_outputs

    e = ensemble
    f = sample_outputs(e.arch, e.X, e.width, e.n_networks, e.seed, dtype=e.dtype)
    ds = xr.Dataset(
        {"f": (("network", "input"), f), "inputs": (("input", "dim"), e.X)},
        attrs=_store_attrs(e) | {"n_complete": e.n_networks},
    )
    write_store(ds, out)
    return len(f)


# --------------------------------------------------------------------------- correlate
@command
@with_architecture
def correlate(
    net,
    X,
    width: list[int] = typer.Option([10], "--width", help="Hidden width N (repeat for several)."),
    n_networks: int = typer.Option(100_000, "--n-networks", help="Networks per width."),
    seed: int = _SEED,
    max_order: int = typer.Option(4, "--max-order", help="Highest even order (2..8)."),
    n_batches: int = typer.Option(1000, "--n-batches", help="Jackknife batches."),
    dtype: str = _DTYPE,
    estimator: str = typer.Option(
        "kernel",
        "--estimator",
        help="kernel (from the last hidden layer: errors that do not grow with N), outputs (the "
        "field likelihood needs these) or both.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Store (.zarr or .nc); with several widths one store per width, named STEM-N<width>.",
    ),
    overwrite: bool = _OVERWRITE,
    scheduler: str = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler to sample on."
    ),
    workers: int = typer.Option(
        0, "--workers", help="Sample on a local Dask cluster of this many worker processes."
    ),
    checkpoint_every: float = typer.Option(
        CHECKPOINT_SECONDS, "--checkpoint-every", help="Seconds between atomic checkpoints."
    ),
):
    """Measure moments and connected correlators of ensembles (streamed, checkpointed)."""
    widths = parse_widths(width)
    ensembles = [
        _ensemble(net, X, w, n_networks, seed, max_order, n_batches, dtype, estimator)
        for w in widths
    ]
    from ..ensembles.correlators import check_enough_networks, small_ensemble_message

    try:
        check_enough_networks(ensembles[0])
    except ValueError as err:
        fail(str(err).removeprefix("n_networks "), "--n-networks")
    cluster = dask_client(scheduler, workers)
    if not checkpoint_every > 0:
        fail(f"must be > 0 seconds, got {checkpoint_every}", "--checkpoint-every")
    out = check_store_path(out)
    paths = [
        out if len(widths) == 1 else out.with_name(f"{out.stem}-N{w}{out.suffix}") for w in widths
    ]
    plans = [_plan(e, p, overwrite) for e, p in zip(ensembles, paths, strict=True)]
    if (message := small_ensemble_message(n_networks)) is not None:
        typer.echo(f"warning: --n-networks: {message}", err=True)
    with cluster as client:
        for (ensemble, resume), path in zip(plans, paths, strict=True):
            stats = _correlate_one(ensemble, resume, path, client, checkpoint_every)
            dev = stats.deviation(ensemble.max_order)
            typer.echo(
                f"N={ensemble.width}: {stats.n_networks} networks -> {path}  "
                f"m_{ensemble.max_order} = {float(dev['m']):.3g} (background "
                f"{float(dev['background']):.2g})"
            )


def _plan(ensemble, path: Path, overwrite: bool):
    """``(ensemble, resume)``: what to accumulate into ``path`` and the sums to start from."""
    from ..core.storage import recover_store
    from ..ensembles.correlators import CorrelatorStats

    recover_store(path)  # a kill between write_store's two renames left the old store aside
    if not path.exists():
        return ensemble, None
    if overwrite:
        _clear(path)
        return ensemble, None
    try:
        old = CorrelatorStats.load(path)
    except (ValueError, KeyError, OSError):
        fail(
            f"{path} is not a correlator store (written by `nnqft correlate`); choose another "
            "--out or give --overwrite",
            "--out",
        )
    if not old.ensemble.same_networks(ensemble):
        fail(
            f"{path} holds a different ensemble ({old.ensemble.label}, seed {old.seed}, "
            f"max order {old.max_order}); choose another --out or give --overwrite",
            "--out",
        )
    if ensemble.n_networks < old.n_networks:
        fail(
            f"{path} already holds {old.n_networks} networks, more than --n-networks "
            f"{ensemble.n_networks}",
            "--n-networks",
        )
    # same networks: resume or extend with the stored batch size (identical to one run)
    target = old.ensemble.extended(ensemble.n_networks)
    return target, old.sums.extended(ensemble.n_networks)


def dask_client(scheduler: str | None, workers: int) -> _DaskClient:
    """The Dask client context of ``--scheduler`` / ``--workers`` (a usage error for
    ``workers < 0``); it connects only when entered."""
    if workers < 0:
        fail(f"must be >= 0, got {workers}", "--workers")
    return _DaskClient(scheduler, workers)


class _DaskClient:
    """Context manager: a Dask client on ``scheduler``, a LocalCluster of ``workers``, or None."""

    def __init__(self, scheduler: str | None, workers: int):
        self.scheduler, self.workers, self.client = scheduler, workers, None

    def __enter__(self):
        if self.scheduler or self.workers:
            from dask.distributed import Client, LocalCluster

            if self.scheduler:
                self.client = Client(self.scheduler)
            else:
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1)
                self.client = Client(cluster)
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            cluster = self.client.cluster if self.scheduler is None else None
            self.client.close()
            if cluster is not None:
                cluster.close()
        return False


def _correlate_one(ensemble, resume, path: Path, client, every: float = CHECKPOINT_SECONDS):
    """One width: accumulate (resuming from ``resume``), checkpointing atomically to ``path``."""
    from ..ensembles.correlators import CorrelatorStats
    from ..ensembles.distributed import distributed_moments
    from ..ensembles.sampler import accumulate_moments

    if resume is not None and resume.n_accumulated == ensemble.n_networks:
        typer.echo(f"N={ensemble.width}: already complete in {path}")
        return CorrelatorStats(ensemble, resume)
    if client is not None:
        start = 0 if resume is None else resume.n_accumulated
        sums = distributed_moments(client, ensemble, start=start)
        if resume is not None:
            sums = sums.merge(resume)
    else:
        last = [time.monotonic()]

        def checkpoint(snapshot):
            if time.monotonic() - last[0] > every:
                CorrelatorStats(ensemble, snapshot()).save(path)
                last[0] = time.monotonic()

        sums = accumulate_moments(ensemble, resume=resume, progress=True, on_chunk=checkpoint)
    stats = CorrelatorStats(ensemble, sums)
    stats.save(path)
    return stats


def register(app: typer.Typer) -> None:
    """Add ``sample`` and ``correlate`` to ``app``."""
    app.command("sample")(sample)
    app.command("correlate")(correlate)
