"""Streaming ensembles: sample networks in jit-compiled chunks, keep only mergeable sums.

Randomness is counter-based: network number ``a`` of the ensemble with seed ``s`` gets its
parameters from ``fold_in(PRNGKey(s), a)`` (threefry), so its outputs do not depend on the
chunk size, the device or how the range of networks is split between workers. With
``Ensemble(sampler="gram")`` the same key instead draws the layers' pre-activations at the
inputs in function space (:meth:`~nnqft_ppl.networks.architectures.MLP.draw_gram`): the same
joint law at X from ``P N`` normals per layer instead of ``N^2``, the way to measure deep and
wide ensembles (the parameter normals are the floor of the default sampler).

An :class:`~nnqft_ppl.ensembles.description.Ensemble` of ``n_networks`` is cut into contiguous
*batches* of ``batch_size`` networks. A :class:`MomentSums` holds, per batch, the sums of every
monomial of the per-network variables (here the outputs ``f(x_1..x_P)``) over unique index
multisets of the accumulated degrees (float64): memory is ``n_batches x sum_n C(P+n-1, n)``,
independent of the number of networks, and two of them for disjoint network ranges merge by
addition. Correlators, jackknife errors and covariances are computed from these sums in
:mod:`nnqft_ppl.ensembles.correlators`.

Chunks lie on a fixed grid of network numbers (multiples of the chunk, or of whole batches on
the fast path), whatever range is asked for: a run that stops and resumes at a grid point, or an
ensemble extended from a batch boundary, sums exactly the same numbers in the same order as one
uninterrupted run, so the results are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.multisets import index_multisets, monomials, multiset_rank, pair_table
from ..core.precision import float64
from ..core.progress import progress_bar
from ..core.validation import check_positive_int
from ..networks.kernels import kernel
from .description import Ensemble
from .estimators import blocks_of, kernel_center, layout

__all__ = ["MomentSums", "accumulate_moments", "sample_outputs", "iter_output_chunks"]

_NORMALS_PER_CHUNK = 1 << 22  # ~32 MB of float64 parameters per chunk
_JAX_DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


@dataclass
class MomentSums:
    """Per-batch monomial sums of an ensemble: the mergeable accumulator.

    Attributes:
        layouts: ``{block: Layout(n_variables, degrees)}``: the per-network variables
            (``"outputs"``: the P outputs; ``"kernel"``: the entries of ``G - K``) and the monomial
            degrees accumulated for each.
        n_networks: size of the whole ensemble (fixes the batch layout with ``batch_size``).
        batch_size: networks per batch (the last batch may be shorter).
        sums: ``{block: {degree: float64 (n_batches, C(V+degree-1, degree))}}``.
        counts: ``(n_batches,)`` networks accumulated into each batch so far.
    """

    layouts: dict
    n_networks: int
    batch_size: int
    sums: dict = field(repr=False)
    counts: np.ndarray = field(repr=False)

    @classmethod
    def empty(cls, layouts: dict, n_networks: int, batch_size: int) -> MomentSums:
        """Zero sums for ``n_networks`` networks in batches of ``batch_size``."""
        n_batches = math.ceil(n_networks / batch_size)
        sums = {
            block: {d: np.zeros((n_batches, len(index_multisets(V, d)))) for d in degrees}
            for block, (V, degrees) in layouts.items()
        }
        return cls(dict(layouts), n_networks, batch_size, sums, np.zeros(n_batches))

    @classmethod
    def for_ensemble(cls, ensemble: Ensemble) -> MomentSums:
        """Zero sums with the layout ``ensemble`` accumulates."""
        return cls.empty(ensemble_layouts(ensemble), ensemble.n_networks, ensemble.batch_size)

    @property
    def n_batches(self) -> int:
        return len(self.counts)

    @property
    def n_accumulated(self) -> int:
        """Networks accumulated so far."""
        return int(self.counts.sum())

    def _layout(self) -> tuple:
        return self.layouts, self.n_networks, self.batch_size

    def merge(self, other: MomentSums) -> MomentSums:
        """Sums of two accumulators over disjoint network ranges of the same ensemble."""
        if self._layout() != other._layout():
            raise ValueError("can only merge moment sums of the same ensemble layout")
        sums = jax.tree.map(np.add, self.sums, other.sums)
        return replace(self, sums=sums, counts=self.counts + other.counts)

    def extended(self, n_networks: int) -> MomentSums:
        """The same sums as the first networks of a larger ensemble (same batch size)."""
        if n_networks < self.n_networks:
            raise ValueError(f"cannot shrink an ensemble from {self.n_networks} to {n_networks}")
        bigger = MomentSums.empty(self.layouts, n_networks, self.batch_size)
        for b, block in self.sums.items():
            for d, s in block.items():
                bigger.sums[b][d][: self.n_batches] = s
        bigger.counts[: self.n_batches] = self.counts
        return bigger


def ensemble_layouts(ensemble: Ensemble) -> dict:
    """``{block: Layout}`` of the variables ``ensemble`` accumulates."""
    return {
        block: layout(block, ensemble.n_inputs, ensemble.max_order)
        for block in blocks_of(ensemble.estimator)
    }


def kernel_shift(ensemble: Ensemble) -> np.ndarray:
    """The fixed shift K of the kernel variables (the GP kernel on the pairs): ``(C(P+1, 2),)``."""
    return kernel_center(kernel(ensemble.arch, ensemble.X))


def _normals_per_network(ensemble: Ensemble) -> int:
    """Standard normals one network draws: its parameters, or ``(L N + P) P`` (Gram sampler)."""
    e = ensemble
    if e.sampler == "gram":
        return (e.arch.depth * e.width + e.n_inputs) * e.n_inputs
    return e.arch.n_parameters(e.width)


def _default_chunk(ensemble: Ensemble) -> int:
    per_network = _normals_per_network(ensemble) + sum(
        len(index_multisets(V, max(degrees))) for V, degrees in ensemble_layouts(ensemble).values()
    )
    # No floor of many networks: a deep wide net (1024 wide, 8 deep: 7e6 normals each) would
    # otherwise hold GBs per chunk; one such network already fills a compiled chunk.
    chunk = max(1, min(1 << 16, _NORMALS_PER_CHUNK // per_network))
    return 1 << int(math.log2(chunk))


def network_keys(root: jax.Array, start, chunk: int) -> jax.Array:
    """The keys ``(chunk,)`` of networks ``start .. start + chunk - 1``: ``fold_in(root, a)``,
    so network a is the same in any chunk, batch, worker or trained ensemble."""
    return jax.vmap(jax.random.fold_in, (None, 0))(root, start + jnp.arange(chunk))


@partial(jax.jit, static_argnames=("arch", "width", "chunk", "dtype", "sampler"))
def _draw_chunk(arch, X, width, root, start, chunk, dtype, sampler="parameters"):
    """Outputs ``(chunk, P)`` (float64) of networks ``start .. start + chunk - 1``."""
    keys = network_keys(root, start, chunk)
    return _features(arch, X, width, keys, dtype, ("outputs",), None, sampler)["outputs"]


@cache
def _split_ranks(n_variables: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Each multiset of ``degree`` as (first ``degree // 2`` entries, the rest): their ranks."""
    T = index_multisets(n_variables, degree)
    half = degree // 2
    return multiset_rank(T[:, :half], n_variables), multiset_rank(T[:, half:], n_variables)


def _slot_sums(weights, values, degrees: tuple) -> dict:
    """Per-slot sums of every monomial of the accumulated degrees: ``{n: (S, M_n)}``.

    ``values``: ``(S, C, V)`` networks grouped by slot (batch), or ``(C, V)`` shared by all slots;
    ``weights (S, C)``: 1 where network c counts in slot s, else 0. A degree-n sum is one batched
    GEMM of the degree ``n // 2`` and ``n - n // 2`` monomials, read at the split of each
    multiset: ``sum_{k <= n/2} C(V+k-1, k)`` products per network instead of one per multiset
    (83 instead of 923 for 6 outputs to order 6).
    """
    V = values.shape[-1]
    mono = monomials(values, max(1, (max(degrees) + 1) // 2))
    spec = "sci,scj->sij" if values.ndim == 3 else "sci,cj->sij"
    out = {}
    for n in degrees:
        if n == 1:
            out[n] = _weighted_sum(weights, values)
            continue
        first, second = _split_ranks(V, n)
        left = weights[..., None] * mono[n // 2]
        out[n] = jnp.einsum(spec, left, mono[n - n // 2])[:, first, second]
    return out


def _weighted_sum(weights, values):
    """``sum_c weights[s, c] values[(s,) c, :]``: ``(S, V)``."""
    if values.ndim == 3:
        return jnp.einsum("sc,scv->sv", weights, values)
    return weights @ values


def _features(arch, X, width, keys, dtype, blocks: tuple, shift, sampler="parameters"):
    """Per-network variables of each block: ``{block: (chunk, V)}`` (float64)."""

    def one(key):
        readout = "outputs" in blocks
        if sampler == "gram":  # the readout kernel comes out of the draw itself
            G, f = arch.draw_gram(key, X, width, dtype, readout=readout)
            G = G.astype(jnp.float64)
        else:
            h, f = arch.draw_layers(key, X, width, dtype, readout=readout)
            G = arch.readout_kernel(h.astype(jnp.float64)) if "kernel" in blocks else None
        out = {}
        if "outputs" in blocks:
            out["outputs"] = f.astype(jnp.float64)
        if "kernel" in blocks:
            out["kernel"] = pair_table(G) - shift
        return out

    return jax.vmap(one)(keys)


@partial(
    jax.jit, static_argnames=("arch", "width", "chunk", "dtype", "layouts", "batch_size", "sampler")
)
def _cell_sums(arch, X, width, root, cell, lo, stop, chunk, dtype, layouts, batch_size, shift,
               sampler="parameters"):  # fmt: skip
    """Monomial sums of the valid networks ``[max(lo, cell), min(stop, cell + chunk))`` of the
    grid cell starting at ``cell``, per batch slot ``cell // batch_size + s``.

    A cell of whole batches (``chunk`` a multiple of ``batch_size``) is reshaped to
    ``(batch, network, V)``; a shorter one touches at most two batches, told apart by weights.
    ``layouts``: ``((block, degrees), ...)``. Returns ``({block: {degree: (S, M)}}, counts (S,))``.
    """
    index = cell + jnp.arange(chunk)
    keys = network_keys(root, cell, chunk)
    blocks = tuple(block for block, _ in layouts)
    features = _features(arch, X, width, keys, dtype, blocks, shift, sampler)
    valid = (index >= lo) & (index < stop)
    if chunk % batch_size == 0:
        n_slots = chunk // batch_size
        weights = valid.reshape(n_slots, batch_size).astype(jnp.float64)
        group = lambda v: v.reshape(n_slots, batch_size, -1)  # noqa: E731
    else:
        slot = index // batch_size - cell // batch_size
        member = (slot[None, :] == jnp.arange(2)[:, None]) & valid[None, :]
        weights = member.astype(jnp.float64)
        group = lambda v: v  # noqa: E731
    sums = {
        block: _slot_sums(weights, group(jnp.where(valid[:, None], features[block], 0.0)), degrees)
        for block, degrees in layouts
    }
    return sums, weights.sum(axis=1)


@partial(jax.jit, donate_argnums=(0, 1))
def _add_rows(acc_sums: dict, acc_counts, part: dict, counts, first_row):
    """Add a cell's per-slot sums into the device accumulator at row ``first_row``.

    The accumulator is padded so every slice stays in range; donation updates it in place, and
    no host transfer happens per chunk (the loop dispatches asynchronously).
    """

    def add(acc, rows):
        start = (first_row,) + (0,) * (acc.ndim - 1)
        block = jax.lax.dynamic_slice(acc, start, rows.shape)
        return jax.lax.dynamic_update_slice(acc, block + rows, start)

    return jax.tree.map(add, acc_sums, part), add(acc_counts, counts)


def _cell_length(chunk: int, batch_size: int) -> int:
    """Networks per grid cell: whole batches when a chunk holds at least two (one batched GEMM
    per order, the fast path), else at most one batch so that a cell touches two batches."""
    if chunk >= 2 * batch_size:
        return (chunk // batch_size) * batch_size
    return min(chunk, batch_size)


@float64
def accumulate_moments(
    ensemble: Ensemble,
    *,
    start: int | None = None,
    stop: int | None = None,
    resume: MomentSums | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    on_chunk=None,
) -> MomentSums:
    """Stream networks ``[start, stop)`` of an ensemble into per-batch monomial sums.

    Args:
        ensemble: the :class:`~nnqft_ppl.ensembles.description.Ensemble` (its ``max_order``,
            ``batch_size`` and ``dtype`` fix what is accumulated and how).
        start, stop: the range of networks (default: after what ``resume`` holds, to the end);
            workers of a cluster each take one range.
        resume: sums to continue from (not modified); their networks are ``[0, start)``. From a
            chunk boundary of an earlier run with the same chunk size, the result is
            bit-identical to an uninterrupted run.
        chunk_size: networks per compiled chunk (default from memory); results do not depend on
            it beyond rounding, and not at all between runs with the same chunk size.
        progress: show a rich progress bar.
        on_chunk: optional callback ``on_chunk(snapshot)`` after each chunk, where
            ``snapshot()`` returns the :class:`MomentSums` so far (a device-to-host copy: call it
            only when checkpointing).

    Returns:
        :class:`MomentSums` covering the networks done so far.

    Example:
        >>> sums = accumulate_moments(Ensemble(ErfNet(), X, width=5, n_networks=10**5))
    """
    if not isinstance(ensemble, Ensemble):
        raise ValueError(f"ensemble must be an nq.Ensemble, got {type(ensemble).__name__}")
    e = ensemble
    fresh = MomentSums.for_ensemble(e)
    sums = resume or fresh
    if sums._layout() != fresh._layout():
        raise ValueError("resume holds the sums of a different ensemble layout")
    start = (sums.n_accumulated if resume is not None else 0) if start is None else start
    stop = e.n_networks if stop is None else stop
    if not 0 <= start <= stop <= e.n_networks:
        raise ValueError(f"need 0 <= start <= stop <= n_networks, got {start}, {stop}")
    chunk = check_positive_int(chunk_size or _default_chunk(e), "chunk_size")
    bs = e.batch_size
    cell = _cell_length(chunk, bs)
    root = jax.random.PRNGKey(e.seed)
    X = jnp.asarray(e.X)
    layouts = tuple((block, lay.degrees) for block, lay in sums.layouts.items())
    shift = jnp.asarray(kernel_shift(e) if "kernel" in sums.layouts else 0.0)
    n_slots = cell // bs if cell % bs == 0 else 2
    # The device accumulator continues from the given sums (padded so every cell's rows are in
    # range): a resumed run adds the same numbers in the same order as an uninterrupted one.
    acc = jax.tree.map(lambda s: jnp.pad(jnp.asarray(s), ((0, n_slots), (0, 0))), sums.sums)
    acc_counts = jnp.pad(jnp.asarray(sums.counts), (0, n_slots))

    def snapshot() -> MomentSums:
        """Host copy of everything accumulated so far."""
        host = jax.tree.map(lambda a: np.array(a)[: sums.n_batches], acc)
        counts = np.array(acc_counts)[: sums.n_batches]
        return replace(sums, sums=host, counts=counts)

    with progress_bar(stop - start, e.label, progress) as advance:
        lo = start
        while lo < stop:
            first = (lo // cell) * cell
            part, counts = _cell_sums(
                e.arch, X, e.width, root, first, lo, stop, cell, _JAX_DTYPES[e.dtype], layouts,
                bs, shift, e.sampler,
            )  # fmt: skip
            acc, acc_counts = _add_rows(acc, acc_counts, part, counts, first // bs)
            step = min(first + cell, stop) - lo
            lo += step
            advance(step)
            if on_chunk is not None:
                on_chunk(snapshot)
    return snapshot()


def iter_output_chunks(ensemble: Ensemble, *, start: int = 0, chunk_size: int | None = None):
    """Yield ``(first_network, outputs (chunk, P))`` for networks ``start .. n_networks - 1``."""
    e = ensemble
    chunk = chunk_size or _default_chunk(e)
    root = jax.random.PRNGKey(e.seed)
    with jax.enable_x64(True):
        X = jnp.asarray(e.X)
        for lo in range(start, e.n_networks, chunk):
            f = _draw_chunk(e.arch, X, e.width, root, lo, chunk, _JAX_DTYPES[e.dtype], e.sampler)
            yield lo, np.asarray(f, dtype=np.float64)[: e.n_networks - lo]


def sample_outputs(
    arch,
    X,
    width: int,
    n_networks: int,
    seed: int = 0,
    *,
    chunk_size: int | None = None,
    dtype: str = "float64",
) -> np.ndarray:
    """Outputs ``(n_networks, P)`` of the first ``n_networks`` networks of seed ``seed``.

    Network ``a`` is the same whatever ``chunk_size``; for large ensembles prefer
    :func:`accumulate_moments`, which never stores the outputs.

    Example:
        >>> f = sample_outputs(ErfNet(), X, width=5, n_networks=1000)     # (1000, P)
    """
    ensemble = Ensemble(arch, X, width, n_networks, seed, max_order=2, dtype=dtype)
    parts = [f for _, f in iter_output_chunks(ensemble, chunk_size=chunk_size)]
    return np.concatenate(parts, axis=0)
