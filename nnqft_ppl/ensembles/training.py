"""Trained ensembles: many finite-width networks trained at once by gradient descent (optax).

Network ``a`` of the ensemble with seed ``s`` starts from exactly the parameters it has in the
untrained ensemble of :mod:`nnqft_ppl.ensembles.sampler` (``theta = normal(fold_in(PRNGKey(s),
a))``), so a trained ensemble is a deterministic function of the untrained one: the same networks,
moved by the optimizer. Training acts on the N(0, 1) parameters ``theta`` (the NTK parametrisation:
the architecture scales them into weights), on the full-batch loss ``1/2 sum_i (f(x_i) - y_i)^2``;
with the default plain gradient descent the infinite-width limit is the Gaussian process of
:mod:`nnqft_ppl.theory.ntk_gp`.

Networks are trained in chunks: one compiled program draws a chunk's parameters, runs the whole
training loop (``lax.scan`` over snapshot segments, ``lax.fori_loop`` over steps, ``vmap`` over
networks) and returns only the outputs at the test inputs. Parameters and optimizer state exist
for one chunk at a time, so memory is bounded by the chunk, not by the ensemble.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

from ..core.multisets import monomials
from ..core.progress import progress_bar
from ..core.validation import check_inputs, check_order, check_positive_int, check_width
from ..networks.architectures import MLP
from ..networks.ntk import check_learning_rate, learning_rate_limit
from .correlators import CorrelatorStats
from .description import Ensemble
from .sampler import MomentSums, network_keys

__all__ = ["train_ensemble", "correlator_stats_from_outputs", "PRECISIONS"]

#: ``precision`` of :func:`train_ensemble`: ``"float64"`` everywhere, or ``"mixed"``: forward and
#: backward pass in float32, parameters, optimizer state and updates in float64.
PRECISIONS = ("float64", "mixed")

#: Float64 parameters per chunk (1 MB): the step's working set (parameters, gradients, optimizer
#: state, activations) then stays in the CPU caches; measured 1.5-3x faster than 16 MB chunks.
_PARAMETERS_PER_CHUNK = 1 << 17


@lru_cache(maxsize=32)
def _sgd(learning_rate: float) -> optax.GradientTransformation:
    """One optimizer object per rate, so repeated calls reuse the compiled training loop."""
    return optax.sgd(learning_rate)


def _default_chunk(arch: MLP, width: int) -> int:
    return max(1, _PARAMETERS_PER_CHUNK // arch.n_parameters(width))


@partial(jax.jit, static_argnames=("arch", "width", "optimizer", "chunk", "precision"))
def _train_chunk(arch, width, optimizer, chunk, X_train, y_train, X_test, root, start, segments,
                 precision="float64"):  # fmt: skip
    """Outputs ``(n_snapshots, chunk, P_test)`` of networks ``start .. start + chunk - 1``.

    ``segments[k]`` steps are taken before snapshot ``k`` (a traced array: new snapshot steps
    do not recompile, only a new number of snapshots does).
    """
    compute = jnp.float32 if precision == "mixed" else jnp.float64
    # The same keys and draw, in the same dtype, as MLP.draw_outputs: the untrained networks.
    keys = network_keys(root, start, chunk)
    theta = jax.vmap(lambda k: arch.draw_parameters(k, width))(keys)

    def outputs(t, X):
        return arch.apply(arch.unflatten(t, width), X)

    def loss(t):
        # "mixed": the pass runs in float32; the cast's transpose hands back a float64
        # gradient, so parameters and optimizer state keep float64 (small updates are not lost)
        r = outputs(t.astype(compute), X_train.astype(compute)) - y_train.astype(compute)
        return 0.5 * jnp.sum(r**2)

    grad = jax.vmap(jax.grad(loss))
    update = jax.vmap(optimizer.update)

    def step(_, carry):
        theta, state = carry
        updates, state = update(grad(theta), state, theta)
        return optax.apply_updates(theta, updates), state

    def segment(carry, n_steps):
        carry = jax.lax.fori_loop(0, n_steps, step, carry)
        return carry, jax.vmap(outputs, (0, None))(carry[0], X_test)

    _, snaps = jax.lax.scan(segment, (theta, jax.vmap(optimizer.init)(theta)), segments)
    return snaps


def _check_snapshots(snapshots, steps: int) -> list[int]:
    if snapshots is None:
        return [steps]
    try:
        values = sorted({int(s) for s in snapshots})
    except (TypeError, ValueError):
        raise ValueError(f"snapshots must be a list of step numbers, got {snapshots!r}") from None
    if not values or values[0] < 0 or values[-1] > steps:
        raise ValueError(f"snapshots must be steps in [0, steps={steps}], got {snapshots!r}")
    return values


def train_ensemble(
    arch: MLP,
    X_train,
    y_train,
    X_test,
    width: int,
    n_networks: int,
    steps: int,
    learning_rate: float | None,
    seed: int = 0,
    optimizer: optax.GradientTransformation | None = None,
    *,
    snapshots=None,
    chunk_size: int | None = None,
    precision: str = "float64",
    progress: bool = False,
) -> xr.DataArray:
    """Train ``n_networks`` networks of width ``width`` and return their outputs at ``X_test``.

    Full-batch training on ``1/2 sum_i (f(x_i) - y_i)^2`` over the N(0, 1) parameters; network
    ``a`` starts from network ``a`` of the untrained ensemble of the same ``seed`` (at
    ``steps=0`` the outputs equal :func:`~nnqft_ppl.ensembles.sampler.sample_outputs` bit for bit).
    Computed in float64 whatever the global ``jax_enable_x64`` setting.

    Args:
        arch: the architecture; width: hidden width N.
        X_train: ``(n_train, d_in)``; y_train: ``(n_train,)``; X_test: ``(P_test, d_in)``.
        n_networks: ensemble size.
        steps: number of optimizer steps (0 = untrained).
        learning_rate: rate of the default plain gradient descent (``optax.sgd``), the dynamics
            the NTK theory describes; it must lie below ``2 / lambda_max(Theta_XX)`` of the
            infinite-width tangent kernel. Pass ``None`` together with ``optimizer``.
        seed: root seed of the initial parameters.
        optimizer: any optax ``GradientTransformation`` (it carries its own step size; reuse
            the same object across calls to reuse the compiled loop). Applied per network.
        snapshots: optional steps (within ``[0, steps]``) at which to record the outputs; the
            result then has a leading ``step`` dimension.
        chunk_size: networks trained together in one compiled program (default: as many as
            fit 1 MB of parameters); results do not depend on it.
        precision: ``"float64"`` (default) or ``"mixed"``: the forward and backward pass in
            float32, parameters, optimizer state and updates in float64. Erf-nets train 5-10x
            faster (XLA's float64 ``erf`` is slow on CPU) and their outputs move by ~1e-6 (erf,
            1000 steps); ReLU nets gain little and their kinks amplify the rounding (docs/
            training.md). Snapshot outputs are always evaluated in float64.
        progress: rich progress bar over chunks.

    Returns:
        float64 ``xarray.DataArray`` ``f`` over ``(network, input)``, or
        ``(step, network, input)`` with ``snapshots``. A warning reports networks whose
        outputs became non-finite (divergence).

    Example:
        >>> X = np.linspace(-1, 1, 8)[:, None]
        >>> f = train_ensemble(ErfNet(), X, np.sin(3 * X[:, 0]), [[0.1], [0.5]], width=256,
        ...                    n_networks=1000, steps=100, learning_rate=0.1)
        >>> f.mean("network"), f.var("network")   # compare with ntk_predict(...)
    """
    Xtr = check_inputs(X_train, arch.d_in)
    Xte = check_inputs(X_test, arch.d_in)
    y = np.asarray(y_train, dtype=np.float64)
    if y.shape != (Xtr.shape[0],):
        raise ValueError(f"y_train must have shape (n_train,) = ({Xtr.shape[0]},), got {y.shape}")
    width = check_width(width)
    n_networks = check_positive_int(n_networks, "n_networks")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    steps = int(steps)
    snaps = _check_snapshots(snapshots, steps)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if optimizer is None:
        rate = check_learning_rate(learning_rate, learning_rate_limit(arch, Xtr))
        optimizer = _sgd(rate)
    elif learning_rate is not None:
        raise ValueError(
            "learning_rate sets the default gradient descent only; with an optimizer pass "
            f"learning_rate=None (got {learning_rate!r}) and put the rate in the optimizer"
        )
    else:
        rate = float("nan")
    if chunk_size is not None:
        chunk = min(n_networks, check_positive_int(chunk_size, "chunk_size"))
    else:
        # Even chunks: the padding of the last one costs at most one network per chunk.
        most = _default_chunk(arch, width)
        chunk = math.ceil(n_networks / math.ceil(n_networks / most))

    out = np.empty((len(snaps), n_networks, Xte.shape[0]))
    with jax.enable_x64(True):
        segments = jnp.asarray(np.diff([0, *snaps]), dtype=jnp.int64)
        args = (jnp.asarray(Xtr), jnp.asarray(y), jnp.asarray(Xte), jax.random.PRNGKey(seed))
        with progress_bar(n_networks, f"training {arch.name} N={width}", progress) as advance:
            for lo in range(0, n_networks, chunk):
                f = _train_chunk(arch, width, optimizer, chunk, *args, lo, segments, precision)
                hi = min(lo + chunk, n_networks)
                out[:, lo:hi] = np.asarray(f)[:, : hi - lo]
                advance(hi - lo)

    diverged = int(np.sum(~np.all(np.isfinite(out[-1]), axis=-1)))
    if diverged:
        warnings.warn(
            f"{diverged} of {n_networks} networks have non-finite outputs after {snaps[-1]} "
            "steps (diverged): lower the learning rate",
            RuntimeWarning,
            stacklevel=2,
        )
    dims, coords = ("network", "input"), {"network": np.arange(n_networks)}
    coords["input"] = np.arange(Xte.shape[0])
    if snapshots is None:
        values = out[0]
    else:
        values, dims, coords["step"] = out, ("step", *dims), np.asarray(snaps)
    return xr.DataArray(
        values,
        dims=dims,
        coords=coords,
        name="f",
        attrs={
            "architecture": json.dumps(arch.to_dict()),
            "width": width,
            "n_networks": n_networks,
            "seed": seed,
            "steps": steps,
            "learning_rate": rate,
            "optimizer": "sgd" if np.isfinite(rate) else "custom",
            "precision": precision,
        },
    )


def correlator_stats_from_outputs(
    arch: MLP,
    X,
    width: int,
    outputs,
    max_order: int = 4,
    n_batches: int = 1000,
    seed: int = 0,
    *,
    center=None,
) -> CorrelatorStats:
    """Correlator statistics (moments, cumulants, jackknife errors) of given network outputs.

    The outputs are summed into per-batch monomial sums with the batch layout of
    :func:`~nnqft_ppl.ensembles.sampler.accumulate_moments` (``n_batches`` contiguous batches
    of networks), so for untrained outputs the result equals
    :func:`~nnqft_ppl.ensembles.correlators.correlators` with ``estimator="outputs"`` of the
    same ensemble, and ``stats.cumulant(4)``, ``stats.stderr(4)`` and the likelihoods work
    unchanged.

    :class:`~nnqft_ppl.ensembles.correlators.CorrelatorStats` assumes a symmetric ensemble (odd
    moments zero). A trained ensemble is not symmetric (its mean is the fit), so pass ``center``:
    the centred outputs have zero mean, and their 2- and 4-point cumulants are those of the trained
    ensemble (with zero mean the 4-point cumulant has only 4 and 2+2 blocks). The 6-point cumulant
    would also need 3+3 blocks, which the statistics do not keep, so ``max_order`` is limited to 4
    when centring.

    Args:
        arch, X, width, seed: the ensemble's description (as for ``correlators``).
        outputs: ``(n_networks, P)`` outputs at ``X`` (e.g. a ``train_ensemble`` result
            without a ``step`` dimension).
        max_order: highest even order of monomials (2..8; at most 4 with ``center``).
        n_batches: contiguous jackknife batches.
        center: ``None`` (use the outputs as they are), ``"mean"`` (subtract the sample mean)
            or an array ``(P,)`` to subtract (e.g. the ``ntk_predict`` mean).

    Returns:
        :class:`~nnqft_ppl.ensembles.correlators.CorrelatorStats`.

    Example:
        >>> f = train_ensemble(arch, X_train, y_train, X, width, 10**5, 100, 0.1)
        >>> stats = correlator_stats_from_outputs(arch, X, width, f, center="mean")
        >>> stats.cumulant(4), stats.stderr(4)
    """
    X = check_inputs(X, arch.d_in)
    f = np.asarray(outputs, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != X.shape[0]:
        raise ValueError(
            f"outputs must have shape (n_networks, P) = (n, {X.shape[0]}), got {f.shape}"
            + (" (select one step of a snapshot result)" if f.ndim == 3 else "")
        )
    if not np.all(np.isfinite(f)):
        raise ValueError("outputs contain NaN or inf (diverged networks?)")
    max_order = check_order(max_order, 8, "max_order")
    n = f.shape[0]
    if center is None:
        spread = f.std(axis=0) / math.sqrt(n)
        z = np.abs(f.mean(axis=0)) / np.where(spread > 0, spread, np.inf)
        if n > 1 and z.max() > 5:
            warnings.warn(
                f"the outputs' mean is {z.max():.1f} standard errors from 0; the correlator "
                "statistics assume a symmetric ensemble: pass center='mean' for trained outputs",
                stacklevel=2,
            )
    else:
        if max_order > 4:
            raise ValueError(
                f"max_order must be <= 4 with center (the 6-pt cumulant of an asymmetric "
                f"ensemble needs odd moments), got {max_order}"
            )
        if isinstance(center, str):
            if center != "mean":
                raise ValueError(f"center must be None, 'mean' or an array, got {center!r}")
            center = f.mean(axis=0)
        shift = np.asarray(center, dtype=np.float64)
        if shift.shape != (X.shape[0],):
            raise ValueError(
                f"center must be None, 'mean' or shape ({X.shape[0]},), got {center!r}"
            )
        f = f - shift

    ensemble = Ensemble(arch, X, width, n, seed, max_order=max_order,
                        n_batches=min(check_positive_int(n_batches, "n_batches"), n),
                        estimator="outputs")  # fmt: skip
    sums = MomentSums.for_ensemble(ensemble)
    degrees = sums.sums["outputs"]
    bs = sums.batch_size
    # Whole batches at a time, ~2^22 monomial values per block, to bound the memory.
    per_block = max(1, (1 << 22) // (bs * max(s.shape[1] for s in degrees.values())))
    for b0 in range(0, sums.n_batches, per_block):
        b1 = min(b0 + per_block, sums.n_batches)
        block = f[b0 * bs : b1 * bs]
        pad = (b1 - b0) * bs - block.shape[0]
        mono = monomials(np.pad(block, ((0, pad), (0, 0))), max_order)
        for d in degrees:
            degrees[d][b0:b1] = mono[d].reshape(b1 - b0, bs, -1).sum(axis=1)
        sums.counts[b0:b1] = np.minimum(bs, n - np.arange(b0, b1) * bs)
    return CorrelatorStats(ensemble, sums)
