"""Throughput of sampling + accumulating up to the 6-pt function, as ratios measured in one run.

For widths 10, 100, 1000 and 6 inputs (Erf-net by default) this prints, per width:

* ours: networks per second of ``accumulate_moments(max_order=6)`` (after compilation);
* (a) ours / the time ``jax.random.normal`` alone takes to draw the same normals (same dtype,
  same compiled chunks): the random numbers are the floor, goal <= 2;
* (b) ours / the paper's approach: one network object built and evaluated at a time (eager
  JAX ops, like a framework module per network), outputs stored, then dense n^n moment
  tensors; goal >= 100x at width 10;
* peak memory (max RSS) before and after a 10x larger ensemble: it must not grow.

Usage: ``python benchmarks/ensemble_throughput.py [--full] [--dtype float32] [--arch relu]``;
``--full`` also times 1e6 networks at width 1000 (goal: under two minutes). The paper-style
baseline is an Erf-net whatever ``--arch`` (its cost is the per-network overhead).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.ensembles.description import DTYPES
from nnqft_ppl.ensembles.sampler import _default_chunk, accumulate_moments

nq.enable_x64()  # the floor below draws float64 normals outside the library's entry points

P_INPUTS = 6
MAX_ORDER = 6


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensemble(arch, X, width, n, dtype):
    return nq.Ensemble(arch, X, width, n, max_order=MAX_ORDER, dtype=dtype)


def time_ours(arch, X, width, n, dtype) -> float:
    # Compile with the timed run's own batch layout (the first networks of the same ensemble).
    accumulate_moments(ensemble(arch, X, width, n, dtype), stop=n // 10)
    start = time.perf_counter()
    accumulate_moments(ensemble(arch, X, width, n, dtype))
    return time.perf_counter() - start


def time_normals(arch, X, width, n, dtype) -> float:
    """Draw the same number of normals in the same chunks, and nothing else."""
    chunk = min(_default_chunk(ensemble(arch, X, width, n, dtype)), n)
    shape = (chunk, arch.n_parameters(width))
    draw = jax.jit(lambda k: jax.random.normal(k, shape, getattr(jnp, dtype)).sum())
    key = jax.random.PRNGKey(0)
    draw(key).block_until_ready()
    start = time.perf_counter()
    for i in range(int(np.ceil(n / chunk))):
        draw(jax.random.fold_in(key, i)).block_until_ready()
    return time.perf_counter() - start


class PaperStyleNetwork:
    """One network object, built and evaluated eagerly: the paper's per-network approach."""

    def __init__(self, key, width, d_in=1):
        k0, k1, k2, k3 = jax.random.split(key, 4)
        self.W0 = jax.random.normal(k0, (width, d_in)) / np.sqrt(d_in)
        self.b0 = jax.random.normal(k1, (width,))
        self.W1 = jax.random.normal(k2, (width,)) / np.sqrt(width)
        self.b1 = jax.random.normal(k3, ())

    def __call__(self, X):
        return jax.scipy.special.erf(X @ self.W0.T + self.b0) @ self.W1 + self.b1


def time_paper_style(X, width, n) -> float:
    start = time.perf_counter()
    key = jax.random.PRNGKey(0)
    outputs = [
        np.asarray(PaperStyleNetwork(jax.random.fold_in(key, a), width)(X)) for a in range(n)
    ]
    f = np.stack(outputs)
    # dense n^n tensors, as in the paper's analysis code
    np.einsum("ai,aj->ij", f, f)
    np.einsum("ai,aj,ak,al->ijkl", f, f, f, f, optimize=True)
    np.einsum("ai,aj,ak,al,am,an->ijklmn", f, f, f, f, f, f, optimize=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also 1e6 networks at width 1000")
    parser.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    parser.add_argument("--arch", default="erf", choices=["erf", "relu", "gauss"])
    args = parser.parse_args()
    arch = {"erf": nq.ErfNet, "relu": nq.ReLUNet, "gauss": nq.GaussNet}[args.arch]()
    X = nq.paper_inputs(arch)
    sizes = {10: 1_000_000, 100: 200_000, 1000: 20_000}
    print(f"{arch.name}, P = {P_INPUTS}, moments up to order {MAX_ORDER}, dtype {args.dtype}")
    print(
        f"{'width':>6} {'networks':>9} {'ours net/s':>11} {'(a) /normals':>13} "
        f"{'paper net/s':>12} {'(b) speed-up':>13}"
    )
    for width, n in sizes.items():
        ours = time_ours(arch, X, width, n, args.dtype)
        floor = time_normals(arch, X, width, n, args.dtype)
        n_paper = 2000 if width < 1000 else 500
        time_paper_style(X, width, 20)  # warm the eager op cache
        paper = time_paper_style(X, width, n_paper)
        print(
            f"{width:>6} {n:>9} {n / ours:>11.0f} {ours / floor:>13.2f} "
            f"{n_paper / paper:>12.0f} {(n / ours) / (n_paper / paper):>12.0f}x"
        )
    before = max_rss_mb()
    accumulate_moments(ensemble(arch, X, 10, 100_000, args.dtype))
    mid = max_rss_mb()
    accumulate_moments(ensemble(arch, X, 10, 1_000_000, args.dtype))
    after = max_rss_mb()
    print(
        f"peak memory (max RSS, MB): {before:.0f} before, {mid:.0f} after 1e5 networks, "
        f"{after:.0f} after 1e6 networks (width 10)"
    )
    if args.full:
        start = time.perf_counter()
        accumulate_moments(ensemble(arch, X, 1000, 1_000_000, args.dtype), progress=True)
        print(f"1e6 networks at width 1000: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
