"""Deep-net ensemble throughput against its floor, measured in the same run; memory.

    python benchmarks/deep_throughput.py [--quick] [--dtype float32]

For a ReLU MLP at criticality at three unit-norm inputs in d = 2 (the deep specs' inputs),
widths 64, 256, 1024 and depths 2, 4, 8, the kernel estimator up to kappa_4 (the deep study's
statistics), this prints per (width, depth):

* ours: networks per second of ``accumulate_moments`` with the parameter sampler (compiled
  first, then timed);
* the floor: the larger of (a) drawing the same normals in the same compiled chunks with
  ``jax.random.normal`` and nothing else, and (b) the same chunks' matrix products alone
  (``(P, n) @ (n, n)`` per hidden layer and network, on matrices drawn beforehand); the ratio
  ours / floor (goal <= 2);
* the Gram sampler (``Ensemble(sampler="gram")``: pre-activations drawn at the inputs, ``P n``
  instead of ``n^2`` normals per layer, the same law at X): networks per second and its
  speed-up over the parameter sampler.

Then the peak memory (max RSS) after ensembles of two sizes (10x apart): streaming keeps it flat
in n_networks. Sizes are chosen so that each timing takes a few seconds (``--quick``: a tenth).
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

nq.enable_x64()  # the floors below draw float64 normals outside the library's entry points

X = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
WIDTHS = (64, 256, 1024)
DEPTHS = (2, 4, 8)
NORMALS_PER_TIMING = 1.5e8  # ~5-10 s of normals on 2 cores


def arch_of(depth: int) -> nq.MLP:
    return nq.MLP(depth, "relu", d_in=2, sw0=2**0.5, sw1=2**0.5, sb0=0.0, sb1=0.0)


def ensemble(depth, width, n, dtype, sampler="parameters") -> nq.Ensemble:
    return nq.Ensemble(arch_of(depth), X, width, n, max_order=4, n_batches=20, dtype=dtype,
                       sampler=sampler)  # fmt: skip


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_ours(e: nq.Ensemble) -> float:
    accumulate_moments(e, stop=max(1, e.n_networks // 10))  # compile with the timed layout
    start = time.perf_counter()
    accumulate_moments(e)
    return time.perf_counter() - start


def _chunks(e: nq.Ensemble) -> tuple[int, int]:
    chunk = min(_default_chunk(e), e.n_networks)
    return chunk, int(np.ceil(e.n_networks / chunk))


def time_normals(e: nq.Ensemble) -> float:
    """The same number of normals in the same chunks, and nothing else."""
    chunk, repeats = _chunks(e)
    shape = (chunk, e.arch.n_parameters(e.width))
    draw = jax.jit(lambda k: jax.random.normal(k, shape, getattr(jnp, e.dtype)).sum())
    key = jax.random.PRNGKey(0)
    draw(key).block_until_ready()
    start = time.perf_counter()
    for i in range(repeats):
        draw(jax.random.fold_in(key, i)).block_until_ready()
    return time.perf_counter() - start


def time_products(e: nq.Ensemble) -> float:
    """The hidden layers' matrix products of the same chunks, on weights drawn beforehand."""
    chunk, repeats = _chunks(e)
    dt = getattr(jnp, e.dtype)
    n, P = e.width, e.n_inputs
    W = jax.random.normal(jax.random.PRNGKey(1), (chunk, n, n), dt)
    h = jax.random.normal(jax.random.PRNGKey(2), (chunk, P, n), dt)

    @jax.jit
    def layers(h, W):
        for _ in range(e.arch.depth - 1):  # the same W each layer: only the products count
            h = jnp.einsum("cpn,cmn->cpm", h, W)
        return h.sum()

    layers(h, W).block_until_ready()
    start = time.perf_counter()
    for i in range(repeats):
        layers(h + i, W).block_until_ready()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the networks")
    parser.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    args = parser.parse_args()
    budget = NORMALS_PER_TIMING / (10 if args.quick else 1)
    print(f"ReLU MLP (critical), P = {X.shape[0]} inputs, kernel estimator to kappa_4, "
          f"dtype {args.dtype}")  # fmt: skip
    print(
        f"{'width':>6} {'depth':>5} {'networks':>9} {'ours net/s':>11} {'normals s':>10} "
        f"{'products s':>11} {'ours/floor':>11} {'gram net/s':>11} {'gram speed-up':>14}"
    )
    for width in WIDTHS:
        for depth in DEPTHS:
            n_par = arch_of(depth).n_parameters(width)
            n = int(max(16, min(20_000, budget // n_par)))
            e = ensemble(depth, width, n, args.dtype)
            ours = time_ours(e)
            floor_n, floor_p = time_normals(e), time_products(e)
            ng = int(max(2000, min(200_000, 50 * n)))
            gram = time_ours(ensemble(depth, width, ng, args.dtype, "gram"))
            print(
                f"{width:>6} {depth:>5} {n:>9} {n / ours:>11.1f} {floor_n:>10.2f} "
                f"{floor_p:>11.2f} {ours / max(floor_n, floor_p):>11.2f} {ng / gram:>11.0f} "
                f"{(ng / gram) / (n / ours):>13.0f}x",
                flush=True,
            )
    # memory: the same streamed ensemble at two sizes, 10x apart
    sizes = (1_000, 10_000) if args.quick else (4_000, 40_000)
    before = max_rss_mb()
    rss = []
    for n in sizes:
        accumulate_moments(ensemble(4, 64, n, args.dtype))
        rss.append(max_rss_mb())
    print(
        f"peak memory (max RSS, MB), width 64, depth 4: {before:.0f} before, "
        f"{rss[0]:.0f} after {sizes[0]:,} networks, {rss[1]:.0f} after {sizes[1]:,} networks"
    )


if __name__ == "__main__":
    main()
