"""Streaming ensembles: sample networks in jit-compiled chunks, keep only mergeable sums.

Randomness is counter-based: network number ``a`` of the ensemble with seed ``s`` gets its
parameters from ``fold_in(PRNGKey(s), a)`` (threefry), so its outputs do not depend on the
chunk size, the device or how the range of networks is split between workers.

The ensemble of ``n_networks`` is cut into contiguous *batches* of ``batch_size`` networks.
A :class:`MomentSums` holds, per batch, the sums of every monomial ``f_i1 ... f_in`` over
unique index multisets of even order ``n <= max_order`` (float64): memory is
``n_batches x sum_n C(P+n-1, n)``, independent of the number of networks, and two of them for
disjoint network ranges merge by addition. Correlators, jackknife errors and covariances are
computed from these sums in :mod:`nnqft_ppl.correlators`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from .architectures import MLP
from .checks import check_inputs, check_positive_int, check_width
from .multisets import index_multisets, monomials, multiset_rank
from .progress import progress_bar

__all__ = ["MomentSums", "accumulate_moments", "sample_outputs", "iter_output_chunks"]

_NORMALS_PER_CHUNK = 1 << 22  # ~32 MB of float64 parameters per chunk
DTYPES = {"float64": jnp.float64, "float32": jnp.float32}


@dataclass
class MomentSums:
    """Per-batch monomial sums of an ensemble: the mergeable accumulator.

    Attributes:
        n_inputs: P.
        max_order: highest even order accumulated.
        n_networks: size of the whole ensemble (fixes the batch layout).
        batch_size: networks per batch (the last batch may be shorter).
        sums: ``{n: float64 (n_batches, C(P+n-1, n))}`` for even ``n <= max_order``.
        counts: ``(n_batches,)`` networks accumulated into each batch so far.
    """

    n_inputs: int
    max_order: int
    n_networks: int
    batch_size: int
    sums: dict = field(repr=False)
    counts: np.ndarray = field(repr=False)

    @classmethod
    def empty(cls, n_inputs: int, max_order: int, n_networks: int, n_batches: int):
        """Zero sums for an ensemble of ``n_networks`` cut into ``n_batches`` batches."""
        batch_size = math.ceil(n_networks / n_batches)
        n_batches = math.ceil(n_networks / batch_size)
        sums = {
            n: np.zeros((n_batches, len(index_multisets(n_inputs, n))))
            for n in range(2, max_order + 1, 2)
        }
        return cls(n_inputs, max_order, n_networks, batch_size, sums, np.zeros(n_batches))

    @property
    def n_batches(self) -> int:
        return len(self.counts)

    @property
    def n_accumulated(self) -> int:
        """Networks accumulated so far."""
        return int(self.counts.sum())

    def merge(self, other: MomentSums) -> MomentSums:
        """Sums of two accumulators over disjoint network ranges of the same ensemble."""
        if (self.n_inputs, self.max_order, self.n_networks, self.batch_size) != (
            other.n_inputs,
            other.max_order,
            other.n_networks,
            other.batch_size,
        ):
            raise ValueError("can only merge moment sums of the same ensemble layout")
        sums = {n: self.sums[n] + other.sums[n] for n in self.sums}
        return MomentSums(
            self.n_inputs,
            self.max_order,
            self.n_networks,
            self.batch_size,
            sums,
            self.counts + other.counts,
        )


def _default_chunk(arch: MLP, width: int, n_inputs: int, max_order: int) -> int:
    per_network = arch.n_parameters(width) + len(index_multisets(n_inputs, max_order))
    chunk = max(256, min(1 << 16, _NORMALS_PER_CHUNK // per_network))
    return 1 << int(math.log2(chunk))


@partial(jax.jit, static_argnames=("arch", "width", "chunk", "dtype"))
def _draw_chunk(arch, X, width, root, start, chunk, dtype):
    """Outputs ``(chunk, P)`` of networks ``start .. start + chunk - 1``."""
    index = start + jnp.arange(chunk)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(root, index)
    return jax.vmap(lambda k: arch.draw_outputs(k, X, width, dtype))(keys)


@cache
def _half_split(n_inputs: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Each multiset of even ``order`` as (first half, second half): their ranks at order/2."""
    T = index_multisets(n_inputs, order)
    half = order // 2
    return multiset_rank(T[:, :half], n_inputs), multiset_rank(T[:, half:], n_inputs)


def _slot_sums(left: dict, right: dict, n_inputs: int, max_order: int) -> dict:
    """Per-batch sums of every even-order monomial from half-order ones: ``{n: (S, M_n)}``.

    ``left[k]``, ``right[k]``: degree-k monomials grouped by batch slot, ``(S, C, M_k)``. The
    order-2k sums are one batched GEMM, ``sum_c D_k[c, i] D_k[c, j]``, read at the (first
    half, second half) split of each multiset: ``sum_{k <= max_order/2} C(P+k-1, k)`` products
    per network instead of one per multiset (83 instead of 923 for P = 6, order 6).
    """
    out = {}
    for n in range(2, max_order + 1, 2):
        first, second = _half_split(n_inputs, n)
        out[n] = jnp.einsum("sci,scj->sij", left[n // 2], right[n // 2])[:, first, second]
    return out


@partial(jax.jit, static_argnames=("arch", "width", "chunk", "dtype", "max_order", "batch_size"))
def _chunk_sums(arch, X, width, root, start, stop, chunk, dtype, max_order, batch_size):
    """Monomial sums of networks ``[start, min(start + chunk, stop))``, ``chunk <= batch_size``.

    The chunk spans at most two batches (slots ``start // batch_size + 0, 1``), told apart by
    membership weights. Returns ``({n: (2, M_n)}, counts (2,))``.
    """
    f = _draw_chunk(arch, X, width, root, start, chunk, dtype).astype(jnp.float64)
    index = start + jnp.arange(chunk)
    valid = index < stop
    slot = (index // batch_size - start // batch_size)[None, :] == jnp.arange(2)[:, None]
    member = (slot & valid[None, :]).astype(jnp.float64)  # (2, chunk)
    mono = monomials(jnp.where(valid[:, None], f, 0.0), max_order // 2)
    left = {k: member[:, :, None] * D[None] for k, D in mono.items()}
    right = {k: jnp.broadcast_to(D, (2, *D.shape)) for k, D in mono.items()}
    return _slot_sums(left, right, X.shape[0], max_order), member.sum(axis=1)


@partial(jax.jit, static_argnames=("arch", "width", "n_slots", "dtype", "max_order", "batch_size"))
def _aligned_sums(arch, X, width, root, start, stop, n_slots, dtype, max_order, batch_size):
    """Monomial sums of ``n_slots`` whole batches from ``start`` (a batch boundary).

    Networks at or beyond ``stop`` count as absent; the monomials are reshaped to
    ``(batch, network, M_k)``. Returns ``({n: (n_slots, M_n)}, counts (n_slots,))``.
    """
    chunk = n_slots * batch_size
    f = _draw_chunk(arch, X, width, root, start, chunk, dtype).astype(jnp.float64)
    valid = start + jnp.arange(chunk) < stop
    mono = monomials(jnp.where(valid[:, None], f, 0.0), max_order // 2)
    grouped = {k: D.reshape(n_slots, batch_size, -1) for k, D in mono.items()}
    counts = valid.reshape(n_slots, batch_size).sum(axis=1).astype(jnp.float64)
    return _slot_sums(grouped, grouped, X.shape[0], max_order), counts


@partial(jax.jit, donate_argnums=(0, 1))
def _add_rows(acc_sums: dict, acc_counts, part: dict, counts, first_row):
    """Add a chunk's per-batch sums into the device accumulator at row ``first_row``.

    The accumulator is padded so every slice stays in range; donation updates it in place, and
    no host transfer happens per chunk (the loop dispatches asynchronously).
    """

    def add(acc, rows):
        start = (first_row,) + (0,) * (acc.ndim - 1)
        block = jax.lax.dynamic_slice(acc, start, rows.shape)
        return jax.lax.dynamic_update_slice(acc, block + rows, start)

    return {n: add(acc_sums[n], part[n]) for n in acc_sums}, add(acc_counts, counts)


def accumulate_moments(
    arch: MLP,
    X,
    width: int,
    n_networks: int,
    seed: int = 0,
    max_order: int = 4,
    n_batches: int = 1000,
    chunk_size: int | None = None,
    dtype: str = "float64",
    start: int = 0,
    stop: int | None = None,
    resume: MomentSums | None = None,
    progress: bool = False,
    on_chunk=None,
) -> MomentSums:
    """Stream networks ``[start, stop)`` of an ensemble into per-batch monomial sums.

    Args:
        arch: architecture; X: inputs ``(P, d_in)``; width: hidden width N.
        n_networks: size of the whole ensemble (fixes the batches).
        seed: root seed; network ``a`` uses ``fold_in(PRNGKey(seed), a)``.
        max_order: highest even order of monomials accumulated (2..8).
        n_batches: number of contiguous batches (jackknife blocks).
        chunk_size: networks per compiled chunk (default from memory); does not change results.
        dtype: ``"float64"`` or ``"float32"`` for the parameter draws and forward pass
            (sums are always float64).
        start, stop: the range of networks to do (default all), for resuming or workers.
        resume: sums to continue from (their ``n_accumulated`` networks must be ``[0, start)``
            when ``start`` is not given).
        progress: show a rich progress bar.
        on_chunk: optional callback ``on_chunk(snapshot)`` after each chunk, where
            ``snapshot()`` returns the :class:`MomentSums` so far (a device-to-host copy: call it
            only when checkpointing).

    Returns:
        :class:`MomentSums` covering the networks done so far (``resume`` is not modified).
    """
    X = check_inputs(X, arch.d_in)
    width = check_width(width)
    n_networks = check_positive_int(n_networks, "n_networks")
    n_batches = min(check_positive_int(n_batches, "n_batches"), n_networks)
    if max_order % 2 or not 2 <= max_order <= 8:
        raise ValueError(f"max_order must be even and between 2 and 8, got {max_order}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    sums = resume or MomentSums.empty(X.shape[0], max_order, n_networks, n_batches)
    if resume is not None and start == 0:
        start = resume.n_accumulated
    stop = n_networks if stop is None else stop
    if not 0 <= start <= stop <= n_networks:
        raise ValueError(f"need 0 <= start <= stop <= n_networks, got {start}, {stop}")
    chunk = check_positive_int(
        chunk_size or _default_chunk(arch, width, X.shape[0], max_order), "chunk_size"
    )
    bs = sums.batch_size
    root = jax.random.PRNGKey(seed)
    Xj = jnp.asarray(X)
    # Device-side accumulator, padded by the most rows one chunk can touch.
    pad = max(chunk // bs, 2)
    acc = {n: jnp.zeros((sums.n_batches + pad, s.shape[1])) for n, s in sums.sums.items()}
    acc_counts = jnp.zeros(sums.n_batches + pad)

    def snapshot() -> MomentSums:
        """Host copy: the sums given at the start plus everything accumulated so far."""
        host = {n: sums.sums[n] + np.asarray(acc[n])[: sums.n_batches] for n in sums.sums}
        counts = sums.counts + np.asarray(acc_counts)[: sums.n_batches]
        return replace(sums, sums=host, counts=counts)

    with progress_bar(stop - start, f"{arch.name} N={width}", progress) as advance:
        lo = start
        while lo < stop:
            if chunk >= 2 * bs and lo % bs == 0:
                # Whole batches: one batched GEMM per order (the fast path).
                n_slots = chunk // bs
                part, counts = _aligned_sums(
                    arch, Xj, width, root, lo, stop, n_slots, DTYPES[dtype], max_order, bs
                )
                step = min(n_slots * bs, stop - lo)
            else:
                # Within at most two batches; up to the next batch boundary when the fast
                # path can take over from there.
                end = min(stop, lo + min(chunk, bs))
                if chunk >= 2 * bs:
                    end = min(end, (lo // bs + 1) * bs)
                part, counts = _chunk_sums(
                    arch, Xj, width, root, lo, end, min(chunk, bs), DTYPES[dtype], max_order, bs
                )
                step = end - lo
            acc, acc_counts = _add_rows(acc, acc_counts, part, counts, lo // bs)
            lo += step
            advance(step)
            if on_chunk is not None:
                on_chunk(snapshot)
    return snapshot()


def iter_output_chunks(
    arch: MLP,
    X,
    width: int,
    n_networks: int,
    seed: int = 0,
    start: int = 0,
    chunk_size: int | None = None,
    dtype: str = "float64",
):
    """Yield ``(first_network, outputs (chunk, P))`` for networks ``start .. n_networks - 1``."""
    X = check_inputs(X, arch.d_in)
    width = check_width(width)
    n_networks = check_positive_int(n_networks, "n_networks")
    chunk = chunk_size or _default_chunk(arch, width, X.shape[0], 2)
    root = jax.random.PRNGKey(seed)
    for lo in range(start, n_networks, chunk):
        f = _draw_chunk(arch, jnp.asarray(X), width, root, lo, chunk, DTYPES[dtype])
        yield lo, np.asarray(f)[: n_networks - lo]


def sample_outputs(
    arch: MLP,
    X,
    width: int,
    n_networks: int,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: str = "float64",
) -> np.ndarray:
    """Outputs ``(n_networks, P)`` of the first ``n_networks`` networks of seed ``seed``.

    Network ``a`` is the same whatever ``chunk_size``; for large ensembles prefer
    :func:`accumulate_moments`, which never stores the outputs.
    """
    parts = [
        f for _, f in iter_output_chunks(arch, X, width, n_networks, seed, 0, chunk_size, dtype)
    ]
    return np.concatenate(parts, axis=0)
