"""``nnqft sample`` and ``nnqft correlate`` (registered in :mod:`nnqft_ppl.cli`).

Both are resumable: ``sample`` streams outputs into a zarr array and records how many networks
are complete; ``correlate`` checkpoints its per-batch sums atomically while it runs, and a
rerun with the same settings continues from the last checkpoint (or skips a finished width).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from .options import (
    ACTIVATION,
    ARCH,
    D_IN,
    DEPTH,
    INPUTS,
    SB0,
    SB1,
    SW0,
    SW1,
    build_architecture,
    parse_inputs,
    parse_widths,
)

CHECKPOINT_SECONDS = 20.0


def _check_out(out: Path) -> Path:
    from nnqft_ppl.checks import check_output_path

    if out.suffix not in (".zarr", ".nc"):
        raise typer.BadParameter(
            f"output must end in .zarr or .nc, got {str(out)!r}", param_hint="--out"
        )
    try:
        return check_output_path(out)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--out") from None


def _check_count(n_networks: int) -> int:
    if n_networks < 2:
        raise typer.BadParameter(
            f"need at least 2 networks, got {n_networks}", param_hint="--n-networks"
        )
    return n_networks


def sample(
    arch: str = ARCH,
    depth: int = DEPTH,
    activation: str = ACTIVATION,
    d_in: int = D_IN,
    sw0: float = SW0,
    sb0: float = SB0,
    sw1: float = SW1,
    sb1: float = SB1,
    inputs: str = INPUTS,
    width: int = typer.Option(10, "--width", help="Hidden width N."),
    n_networks: int = typer.Option(10_000, "--n-networks", help="Number of networks."),
    seed: int = typer.Option(
        0, "--seed", help="Root seed (network a always gets the same parameters)."
    ),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32 forward pass."),
    out: Path = typer.Option(
        ..., "--out", help="Output store: .zarr (streamed, resumable) or .nc (written at the end)."
    ),
):
    """Sample network outputs f(x) of an ensemble and store them (dims network, input)."""
    from nnqft_ppl.checks import check_width

    net = build_architecture(arch, d_in, sw0, sb0, sw1, sb1, depth, activation)
    X = parse_inputs(inputs, net, d_in)
    n_networks = _check_count(n_networks)
    try:
        check_width(width)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--width") from None
    out = _check_out(out)
    settings = {
        "architecture": net.to_dict(),
        "width": width,
        "seed": seed,
        "n_networks": n_networks,
        "dtype": dtype,
        "inputs": X.tolist(),
    }
    if out.suffix == ".zarr":
        done = _sample_to_zarr(net, X, settings, out)
    else:
        done = _sample_to_netcdf(net, X, settings, out)
    typer.echo(f"{done} networks of {net.name} N={width} in {out}")


def _sample_to_zarr(net, X, settings: dict, out: Path) -> int:
    """Stream chunks into ``out/f``; ``attrs['n_complete']`` marks finished networks."""
    import zarr

    from nnqft_ppl.ensemble import iter_output_chunks
    from nnqft_ppl.progress import progress_bar

    n, P = settings["n_networks"], X.shape[0]
    if out.exists():
        group = zarr.open_group(out, mode="a")
        if group.attrs.get("settings") != settings:
            raise typer.BadParameter(
                f"{out} holds a different ensemble; choose another --out or delete it",
                param_hint="--out",
            )
        start = int(group.attrs["n_complete"])
    else:
        group = zarr.open_group(out, mode="w")
        group.attrs.update({"settings": settings, "n_complete": 0})
        group.create_array("inputs", data=X, dimension_names=("input", "dim"))
        group.create_array(
            "f",
            shape=(n, P),
            dtype="float64",
            chunks=(min(n, 65536), P),
            dimension_names=("network", "input"),
        )
        start = 0
    f_array = group["f"]
    chunks = iter_output_chunks(
        net, X, settings["width"], n, settings["seed"], start, dtype=settings["dtype"]
    )
    with progress_bar(n - start, f"sampling {net.name}") as advance:
        for lo, f in chunks:
            f_array[lo : lo + len(f)] = f
            group.attrs["n_complete"] = lo + len(f)  # only after the data are written
            advance(len(f))
    return n


def _sample_to_netcdf(net, X, settings: dict, out: Path) -> int:
    import json

    import xarray as xr

    from nnqft_ppl.ensemble import sample_outputs
    from nnqft_ppl.storage import write_store

    f = sample_outputs(
        net, X, settings["width"], settings["n_networks"], settings["seed"], dtype=settings["dtype"]
    )
    ds = xr.Dataset(
        {"f": (("network", "input"), f), "inputs": (("input", "dim"), X)},
        attrs={"settings": json.dumps(settings)},
    )
    write_store(ds, out)
    return len(f)


def correlate(
    arch: str = ARCH,
    depth: int = DEPTH,
    activation: str = ACTIVATION,
    d_in: int = D_IN,
    sw0: float = SW0,
    sb0: float = SB0,
    sw1: float = SW1,
    sb1: float = SB1,
    inputs: str = INPUTS,
    width: list[int] = typer.Option([10], "--width", help="Hidden width N (repeat for several)."),
    n_networks: int = typer.Option(100_000, "--n-networks", help="Networks per width."),
    seed: int = typer.Option(0, "--seed", help="Root seed."),
    max_order: int = typer.Option(4, "--max-order", help="Highest even order (2..8)."),
    n_batches: int = typer.Option(1000, "--n-batches", help="Jackknife batches."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32 forward pass."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Store (.zarr or .nc); with several widths one store per width, named STEM-N<width>.",
    ),
):
    """Measure moments and connected correlators of ensembles (streamed, checkpointed)."""
    net = build_architecture(arch, d_in, sw0, sb0, sw1, sb1, depth, activation)
    X = parse_inputs(inputs, net, d_in)
    widths = parse_widths(width)
    n_networks = _check_count(n_networks)
    if max_order % 2 or not 2 <= max_order <= 8:
        raise typer.BadParameter(
            f"max order must be even, 2..8; got {max_order}", param_hint="--max-order"
        )
    out = _check_out(out)
    for w in widths:
        path = out if len(widths) == 1 else out.with_name(f"{out.stem}-N{w}{out.suffix}")
        stats = _correlate_one(net, X, w, n_networks, seed, max_order, n_batches, dtype, path)
        dev = stats.deviation(max_order)
        typer.echo(
            f"N={w}: {stats.n_networks} networks -> {path}  "
            f"m_{max_order} = {float(dev['m']):.3g} (background "
            f"{float(dev['background']):.2g})"
        )


def _correlate_one(net, X, width, n_networks, seed, max_order, n_batches, dtype, path: Path):
    """One width: resume from ``path`` if it holds a checkpoint of the same ensemble."""
    import nnqft_ppl as nq
    from nnqft_ppl.ensemble import accumulate_moments

    resume = None
    if path.exists():
        old = nq.CorrelatorStats.load(path)
        same = (
            old.arch == net
            and old.width == width
            and old.seed == seed
            and old.sums.n_networks == n_networks
            and old.max_order == max_order
            and np.array_equal(old.X, X)
            and old.dtype == dtype
        )
        if not same:
            raise typer.BadParameter(
                f"{path} holds a different ensemble; choose another --out", param_hint="--out"
            )
        if old.n_networks == n_networks:
            typer.echo(f"N={width}: already complete in {path}")
            return old
        resume = old.sums
    last = [time.monotonic()]

    def checkpoint(snapshot):
        if time.monotonic() - last[0] > CHECKPOINT_SECONDS:
            nq.CorrelatorStats(net, X, width, seed, snapshot(), dtype).save(path)
            last[0] = time.monotonic()

    try:
        sums = accumulate_moments(
            net,
            X,
            width,
            n_networks,
            seed,
            max_order,
            n_batches,
            dtype=dtype,
            resume=resume,
            progress=True,
            on_chunk=checkpoint,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    stats = nq.CorrelatorStats(net, X, width, seed, sums, dtype)
    stats.save(path)
    return stats


def register(app: typer.Typer) -> None:
    """Add ``sample`` and ``correlate`` to ``app``."""
    app.command("sample")(sample)
    app.command("correlate")(correlate)
