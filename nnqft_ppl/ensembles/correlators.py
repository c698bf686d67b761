"""Measured correlators of an ensemble, with honest error bars (docs/physics.md §2, §5).

Two estimators of the same quantities (:mod:`nnqft_ppl.ensembles.estimators`):

* ``"kernel"`` (default): from the last hidden layer's kernel ``G``: moments are the Wick sums
  of the sample moments of G, connected correlators the pairing sums of its k-statistics;
  unbiased, and their errors do not grow with the width.
* ``"outputs"``: from the outputs' sample moments (``G_n`` unbiased, ``kappa_n`` by the
  plug-in moment-cumulant formula, bias O(1/n_networks), far below its standard error). The
  field-level likelihood needs these.

Errors: delete-one-batch jackknife over the contiguous batches of
:class:`~nnqft_ppl.ensembles.sampler.MomentSums` (valid for any smooth function of the sums),
giving standard errors and the full covariance between entries. For single-hidden-layer nets
the exact sampling covariance of ``kappa_4`` is available for both estimators too;
:meth:`CorrelatorStats.error_ratio` compares the two and :func:`correlators` warns when batch
errors cannot be trusted (heavy tails: Gauss-net with sb0 = 1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import xarray as xr

from ..core.linalg import whitening
from ..core.multisets import gp_moments, index_multisets
from ..core.precision import float64
from ..core.storage import open_store, write_store
from ..core.tuples import tuple_array, tuple_covariance
from ..core.validation import check_choice, check_order
from ..networks.architectures import MLP, architecture_from_dict
from ..networks.kernels import kernel
from ..oracle.exact import exact_covariance, exact_kernel_covariance
from .description import Ensemble
from .estimators import BLOCKS, StatisticTables, tables
from .sampler import MomentSums, accumulate_moments, kernel_shift

__all__ = [
    "CorrelatorStats",
    "correlators",
    "monte_carlo_kernel",
    "BatchErrorWarning",
    "SmallEnsembleWarning",
    "MIN_NETWORKS",
    "check_enough_networks",
    "small_ensemble_message",
]

#: Batch (jackknife) errors of kappa_4 below this fraction of the exact ones trigger a warning.
TRUSTED_ERROR_RATIO = 0.7
#: Fewer networks than this give unreliable errors (few batches, non-Gaussian tails).
MIN_NETWORKS = 1000
_JACKKNIFE_BLOCK = 64  # leave-one-out estimates evaluated this many at a time (memory)
KINDS = ("cumulant", "moment")
METHODS = ("jackknife", "exact")


class BatchErrorWarning(UserWarning):
    """Jackknife (batch) errors disagree with the exact sampling errors."""


class SmallEnsembleWarning(UserWarning):
    """Too few networks for trustworthy estimates and errors."""


@dataclass
class CorrelatorStats:
    """Moments, connected correlators and their errors for one ensemble.

    Built by :func:`correlators`; every method returns xarray objects over ``tuple`` (index
    multisets in :func:`~nnqft_ppl.core.multisets.index_multisets` order, labels
    ``"i,j,k,l"``). Methods take ``estimator=None`` (the ensemble's own: ``"kernel"`` when it
    accumulated the kernel, else ``"outputs"``) or an explicit one the ensemble accumulated.

    Attributes:
        ensemble: the :class:`~nnqft_ppl.ensembles.description.Ensemble` measured.
        sums: its per-batch monomial sums (possibly of the first networks only).
    """

    ensemble: Ensemble
    sums: MomentSums = field(repr=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------- basics
    arch = property(lambda self: self.ensemble.arch, doc="The architecture.")
    X = property(lambda self: self.ensemble.X, doc="Inputs ``(P, d_in)``.")
    width = property(lambda self: self.ensemble.width, doc="Hidden width N.")
    seed = property(lambda self: self.ensemble.seed, doc="Root seed.")
    n_inputs = property(lambda self: self.ensemble.n_inputs, doc="P.")
    max_order = property(lambda self: self.ensemble.max_order, doc="Highest accumulated order.")

    @property
    def n_networks(self) -> int:
        """Networks accumulated."""
        return self.sums.n_accumulated

    @property
    def estimators(self) -> tuple[str, ...]:
        """The estimators these statistics hold (``"kernel"`` and/or ``"outputs"``)."""
        return tuple(self.sums.layouts)

    def _estimator(self, estimator: str | None) -> str:
        if estimator is None:
            return "kernel" if "kernel" in self.sums.layouts else "outputs"
        check_choice(estimator, BLOCKS, "estimator")
        if estimator not in self.sums.layouts:
            raise ValueError(
                f"the {estimator!r} estimator was not accumulated (this ensemble has "
                f"{', '.join(self.estimators)}); sample with estimator={estimator!r} or 'both'"
            )
        return estimator

    def _check(self, order: int) -> int:
        order = check_order(order)
        if order > self.max_order:
            raise ValueError(
                f"order {order} was not accumulated (max_order={self.max_order}); "
                f"sample again with max_order >= {order}"
            )
        return order

    def _wrap(self, values, order: int, name: str, **attrs) -> xr.DataArray:
        return tuple_array(values, self.n_inputs, order, name, width=self.width,
                           n_networks=self.n_networks, **attrs)  # fmt: skip

    def _shift(self):
        if "shift" not in self._cache:
            self._cache["shift"] = kernel_shift(self.ensemble)
        return self._cache["shift"]

    def _tables(self, estimator: str, sums: dict, n) -> StatisticTables:
        shift = self._shift() if estimator == "kernel" else None
        return tables(estimator, sums, n, self.n_inputs, self.max_order, shift)

    def _totals(self, estimator: str) -> dict:
        """The power sums over all batches, ``{degree: (M_degree,)}``."""
        key = ("totals", estimator)
        if key not in self._cache:
            self._cache[key] = {d: s.sum(axis=0) for d, s in self.sums.sums[estimator].items()}
        return self._cache[key]

    def _estimates(self, estimator: str) -> StatisticTables:
        key = ("estimates", estimator)
        if key not in self._cache:
            self._cache[key] = self._tables(estimator, self._totals(estimator), self.n_networks)
        return self._cache[key]

    # ----------------------------------------------------------------- estimates
    def moment(self, order: int, estimator: str | None = None) -> xr.DataArray:
        """Estimated ``G_n = E[f_i1 ... f_in]`` on unique multisets (unbiased)."""
        order, estimator = self._check(order), self._estimator(estimator)
        return self._wrap(self._estimates(estimator).moments[order], order, f"G_{order}",
                          estimator=estimator)  # fmt: skip

    def cumulant(self, order: int, estimator: str | None = None) -> xr.DataArray:
        """Estimated connected correlator ``kappa_n`` (``kappa_2`` is the 2-pt function)."""
        order, estimator = self._check(order), self._estimator(estimator)
        return self._wrap(self._estimates(estimator).cumulants[order], order, f"kappa_{order}",
                          estimator=estimator)  # fmt: skip

    def gp_moment(self, order: int) -> xr.DataArray:
        """GP (Wick) prediction ``sum over pairings of K K ...`` with the exact kernel."""
        order = check_order(order)
        G = gp_moments(kernel(self.arch, self.X), order)[order]
        return self._wrap(G, order, f"G_{order}_GP")

    # ----------------------------------------------------------------- errors
    def _jackknife(self, kind: str, order: int, estimator: str) -> np.ndarray:
        """Leave-one-batch-out estimates ``(n_batches, M_order)`` of moments or cumulants."""
        key = ("jack", estimator)
        if key not in self._cache:  # one pass gives every order and kind: cache them all
            block, total = self.sums.sums[estimator], self._totals(estimator)
            n_left = self.n_networks - self.sums.counts
            if np.any(n_left <= 0) or self.sums.n_batches < 2:
                raise ValueError("the jackknife needs at least two non-empty batches")
            parts = []
            for lo in range(0, self.sums.n_batches, _JACKKNIFE_BLOCK):
                sl = slice(lo, lo + _JACKKNIFE_BLOCK)
                loo = {d: total[d] - s[sl] for d, s in block.items()}
                parts.append(self._tables(estimator, loo, n_left[sl]))
            self._cache[key] = StatisticTables(
                {n: np.concatenate([t.moments[n] for t in parts]) for n in parts[0].moments},
                {n: np.concatenate([t.cumulants[n] for t in parts]) for n in parts[0].cumulants},
            )
        jack = self._cache[key]
        return (jack.moments if kind == "moment" else jack.cumulants)[order]

    def _jackknife_covariance(self, kind: str, order: int, estimator: str) -> np.ndarray:
        est = self._jackknife(kind, order, estimator)
        B = est.shape[0]
        dev = est - est.mean(axis=0)
        return (B - 1) / B * dev.T @ dev

    def covariance(self, order: int, kind: str = "cumulant", method: str = "jackknife",
                   estimator: str | None = None):  # fmt: skip
        """Covariance of the estimates of all entries: xarray ``(tuple, tuple_)``.

        Args:
            order: even order.
            kind: ``"cumulant"`` (kappa_n) or ``"moment"`` (G_n).
            method: ``"jackknife"`` (delete-one-batch) or ``"exact"`` (kappa_4 of
                single-hidden-layer nets: the exact sampling covariance, from exact
                single-neuron moments up to order 8).
            estimator: ``"kernel"`` or ``"outputs"`` (default: the ensemble's own).
        """
        order, estimator = self._check(order), self._estimator(estimator)
        check_choice(kind, KINDS, "kind")
        check_choice(method, METHODS, "method")
        if method == "jackknife":
            cov = self._jackknife_covariance(kind, order, estimator)
        else:
            if kind != "cumulant" or order != 4:
                raise ValueError("method='exact' is available for the kappa_4 estimator only")
            cov = self._exact_kappa4_covariance(estimator)
        return tuple_covariance(cov, self.n_inputs, order, f"cov_{kind}_{order}", method=method,
                                estimator=estimator)  # fmt: skip

    def _exact_kappa4_covariance(self, estimator: str) -> np.ndarray:
        key = ("exact_cov", estimator)
        if key not in self._cache:
            if estimator == "outputs":
                per_network = exact_covariance(self.arch, self.X, self.width, 4).values
                self._cache[key] = per_network / self.n_networks
            else:
                exact = exact_kernel_covariance(self.arch, self.X, self.width)
                self._cache[key] = exact.at(self.n_networks)
        return self._cache[key]

    def stderr(self, order: int, kind: str = "cumulant", method: str = "jackknife",
               estimator: str | None = None):  # fmt: skip
        """Standard errors of every entry (sqrt of the covariance diagonal)."""
        cov = self.covariance(order, kind, method, estimator)
        se = np.sqrt(np.clip(np.diagonal(cov.values), 0, None))
        name = ("kappa" if kind == "cumulant" else "G") + f"_{order}_stderr"
        return self._wrap(se, order, name, method=method, estimator=cov.attrs["estimator"])

    def independent_numbers(self, order: int, kind: str = "cumulant", method: str = "jackknife",
                            estimator: str | None = None) -> int:  # fmt: skip
        """How many independent numbers the order-``order`` estimates hold: the rank of their
        covariance (eigenvalues above :data:`~nnqft_ppl.core.linalg.DEFAULT_RTOL` x the largest).

        Fewer than the number of tuples when the entries are tied (e.g. ReLU-net with
        ``d_in = 1``, positive inputs and no biases: every network is ``f(x) = x f(1)`` and
        kappa_4 holds one number). A jackknife covariance has rank at most ``n_batches - 1``.
        """
        return whitening(self.covariance(order, kind, method, estimator)).rank

    def error_ratio(self, estimator: str | None = None) -> xr.DataArray:
        """Jackknife over exact standard errors of kappa_4, per entry (single hidden layer).

        Near 1 for light-tailed ensembles; well below 1 means the batches have not sampled
        the tails that dominate the 8-pt moments, and batch errors are too small.
        """
        jack = self.stderr(4, estimator=estimator).values
        ratio = jack / self.stderr(4, method="exact", estimator=estimator).values
        return self._wrap(ratio, 4, "kappa_4_error_ratio")

    def check_errors(self, estimator: str | None = None) -> float:
        """Median jackknife/exact error ratio of kappa_4; warns when batch errors are too small."""
        ratio = float(np.median(self.error_ratio(estimator).values))
        # Jackknife standard errors from B batches scatter by ~1/sqrt(2B): few batches must
        # not raise the heavy-tail alarm by chance.
        threshold = min(TRUSTED_ERROR_RATIO, 1 - 5 / np.sqrt(2 * self.sums.n_batches))
        if ratio < threshold:
            warnings.warn(
                f"{self.ensemble.label}: jackknife (batch) errors of kappa_4 are "
                f"{ratio:.2f} x the exact sampling errors; the ensemble's heavy tails are "
                "under-sampled, so use covariance(4, method='exact') / stderr(4, method='exact')",
                BatchErrorWarning,
                stacklevel=2,
            )
        return ratio

    def deviation(self, order: int, estimator: str | None = None) -> xr.Dataset:
        """The normalised deviation from the GP and its noise background.

        ``m_n = mean_tuples |G_n - G_n,GP| / |G_n,GP|``; ``background`` replaces
        ``|G_n - G_n,GP|`` by the jackknife standard error of ``G_n`` (the spread across
        batches, scaled to the whole ensemble), so ``m_n`` is resolved when it exceeds it.
        """
        G, GP = self.moment(order, estimator).values, self.gp_moment(order).values
        se = self.stderr(order, kind="moment", estimator=estimator).values
        return xr.Dataset(
            {
                "m": np.mean(np.abs(G - GP) / np.abs(GP)),
                "background": np.mean(se / np.abs(GP)),
            },
            attrs={"order": order, "width": self.width, "n_networks": self.n_networks},
        )

    # ----------------------------------------------------------------- storage
    def to_dataset(self) -> xr.Dataset:
        """Everything needed to rebuild the statistics (per-batch sums) as an xarray Dataset,
        self-describing: the architecture and ensemble settings as attributes, the inputs, and
        the moments and cumulants of each order over their labelled ``tuple_<n>`` dims."""
        e = self.ensemble
        data = {
            f"sums_{b}_{d}": (("batch", f"monomial_{b}_{d}"), s)
            for b, block in self.sums.sums.items()
            for d, s in block.items()
        }
        data["counts"] = (("batch",), self.sums.counts)
        data["inputs"] = (("input", "dim"), self.X)
        coords = {}
        if self.n_networks > 1:
            for n in range(2, self.max_order + 1, 2):
                dim = f"tuple_{n}"
                coords[dim] = self.moment(n).tuple.values
                data[f"G_{n}"] = ((dim,), self.moment(n).values)
                data[f"kappa_{n}"] = ((dim,), self.cumulant(n).values)
        attrs = {f"architecture_{k}": v for k, v in e.arch.to_dict().items()}
        attrs |= {f.name: getattr(e, f.name) for f in fields(e) if f.name not in ("arch", "X")}
        attrs["n_accumulated"] = self.n_networks
        attrs["store"] = "nnqft correlator statistics"
        return xr.Dataset(data, coords=coords, attrs=attrs)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> CorrelatorStats:
        """Inverse of :meth:`to_dataset`."""
        a = ds.attrs
        if a.get("store") != "nnqft correlator statistics" or "counts" not in ds:
            raise ValueError("not a correlator-statistics store (written by nnqft correlate or "
                             "CorrelatorStats.save)")  # fmt: skip
        arch = architecture_from_dict(
            {k.removeprefix("architecture_"): _plain(v) for k, v in a.items()
             if k.startswith("architecture_")}
        )  # fmt: skip
        names = [f.name for f in fields(Ensemble) if f.name not in ("arch", "X")]
        # stores written before a field existed hold its default (e.g. sampler)
        settings = {k: _plain(a[k]) for k in names if k in a}
        ensemble = Ensemble(arch, ds["inputs"].values, **settings)
        sums = MomentSums.for_ensemble(ensemble)
        for b, block in sums.sums.items():
            for d in block:
                block[d] = ds[f"sums_{b}_{d}"].values.copy()
        sums.counts = ds["counts"].values.copy()
        return cls(ensemble, sums)

    def save(self, path) -> Path:
        """Write to ``path`` (``.zarr`` directory or ``.nc`` netCDF file), atomically."""
        return write_store(self.to_dataset(), path)

    @classmethod
    def load(cls, path) -> CorrelatorStats:
        """Read what :meth:`save` wrote."""
        return cls.from_dataset(open_store(path))


def _plain(value):
    """An attribute as a plain Python value (stores give NumPy scalars)."""
    return value.item() if hasattr(value, "item") else value


@float64
def correlators(
    arch,
    X=None,
    width: int | None = None,
    n_networks: int | None = None,
    seed: int = 0,
    *,
    max_order: int = 4,
    n_batches: int = 1000,
    dtype: str = "float64",
    estimator: str = "kernel",
    sampler: str = "parameters",
    chunk_size: int | None = None,
    client=None,
    progress: bool = False,
    check_errors: bool = True,
) -> CorrelatorStats:
    """Sample an ensemble (streamed) and measure its correlators up to ``max_order``.

    Args:
        arch: architecture, e.g. ``GaussNet(d_in=1)``, or a whole
            :class:`~nnqft_ppl.ensembles.description.Ensemble` (then leave out the ensemble
            arguments).
        X: inputs ``(P, d_in)``.
        width: hidden width N.
        n_networks: ensemble size (streamed; memory does not grow with it).
        seed: root seed (network a always gets the same parameters).
        max_order: highest even order (2..8).
        n_batches: jackknife batches (more than the number of entries whose covariance you
            need: 126 for kappa_4, 462 for kappa_6 at P = 6).
        dtype: ``"float64"`` or ``"float32"`` parameter draws and forward pass.
        estimator: ``"kernel"`` (connected correlators from the last hidden layer's kernel:
            errors that do not grow with N), ``"outputs"`` (from the outputs' moments; needed by
            the field-level likelihood) or ``"both"``.
        sampler: ``"parameters"`` (draw each network's parameters) or ``"gram"`` (draw the
            layers' pre-activations at X in function space: the same law at X, ``L N P``
            instead of ``~L N^2`` normals per network; for deep and wide nets).
        chunk_size: networks per compiled chunk; results do not depend on it.
        client: a ``dask.distributed.Client``: split the ensemble over its workers (same
            result as one process, to rounding).
        progress: rich progress bar.
        check_errors: for single-hidden-layer nets with ``max_order >= 4``, compare batch and
            exact errors of kappa_4 and warn (:class:`BatchErrorWarning`) when they disagree.

    Returns:
        :class:`CorrelatorStats`.

    Example:
        >>> stats = correlators(ErfNet(), X, width=5, n_networks=10**5, max_order=6)
        >>> stats.cumulant(4), stats.stderr(4)
    """
    if isinstance(arch, Ensemble):
        if any(v is not None for v in (X, width, n_networks)):
            raise ValueError("give either an Ensemble or arch, X, width, n_networks, not both")
        ensemble = arch
    else:
        if X is None or width is None or n_networks is None:
            raise ValueError("correlators needs X, width and n_networks (or an Ensemble)")
        ensemble = Ensemble(arch, X, width, n_networks, seed, max_order, n_batches, dtype=dtype,
                            estimator=estimator, sampler=sampler)  # fmt: skip
    check_enough_networks(ensemble)
    if client is not None:
        from .distributed import distributed_moments

        sums = distributed_moments(client, ensemble)
    else:
        sums = accumulate_moments(ensemble, chunk_size=chunk_size, progress=progress)
    stats = CorrelatorStats(ensemble, sums)
    if (message := small_ensemble_message(stats.n_networks)) is not None:
        warnings.warn(
            f"{ensemble.label}: {message}",
            SmallEnsembleWarning,
            stacklevel=3,  # the caller of correlators (through the float64 wrapper)
        )
    if check_errors and ensemble.arch.depth == 1 and ensemble.max_order >= 4 and sums.n_batches > 1:
        for estimator in stats.estimators:
            stats.check_errors(estimator)
    return stats


def check_enough_networks(ensemble: Ensemble) -> None:
    """Refuse ensembles too small for any statistics of their order (one-line ``ValueError``).

    Order-n k-statistics need more than n networks, and each jackknife replicate drops a batch:
    below ``2 * max_order`` networks the estimates and their errors are undefined.
    """
    least = 2 * ensemble.max_order
    if ensemble.n_networks < least:
        raise ValueError(
            f"n_networks must be at least {least} for correlators up to order "
            f"{ensemble.max_order}, got {ensemble.n_networks}"
        )


def small_ensemble_message(n_networks: int) -> str | None:
    """Why ``n_networks`` networks give untrustworthy statistics, or None when they are enough
    (the text of :class:`SmallEnsembleWarning` and of the CLI's warning)."""
    if n_networks >= MIN_NETWORKS:
        return None
    return (
        f"{n_networks} networks are too few for trustworthy correlators and errors (fewer than "
        f"{MIN_NETWORKS}: few batches, unsampled tails)"
    )


def monte_carlo_kernel(arch: MLP, X, width: int, n_networks: int, seed: int = 0):
    """Monte Carlo estimate of the 2-pt function, for any architecture.

    Measured with the kernel estimator, ``E[f_a f_b] = E[G_ab]`` with ``G`` the last hidden
    layer's readout covariance: the same networks' outputs would add the readout's Gaussian
    noise (``Var(f_a f_b) = Var(G_ab) + G_aa G_bb + G_ab^2``, with ``Var(G) = O(1/N)``), so this
    error is ~sqrt(N) times smaller at large width, and exactly as unbiased.

    Returns ``(K (P, P), stderr (P, P))`` as float64 arrays.
    """
    stats = correlators(arch, X, width, n_networks, seed, max_order=2, n_batches=100,
                        estimator="kernel", check_errors=False)  # fmt: skip
    P = stats.n_inputs
    K, se = np.zeros((P, P)), np.zeros((P, P))
    i, j = index_multisets(P, 2).T
    K[i, j] = K[j, i] = stats.moment(2, "kernel").values
    se[i, j] = se[j, i] = stats.stderr(2, kind="moment", estimator="kernel").values
    return K, se
