"""One description of an ensemble of networks, taken by the sampler, the correlator statistics,
Dask, the cache and the command line alike.

An :class:`Ensemble` says *which* networks (architecture, width, seed: network ``a`` always has
the parameters drawn from ``fold_in(PRNGKey(seed), a)``, or with ``sampler="gram"`` a draw of
its pre-activations at the inputs in function space), *where* they are evaluated (inputs X),
*how many* (``n_networks``), *which statistics* are accumulated (the ``estimator``'s variables,
for correlators up to ``max_order``) and *how they are batched* for errors (contiguous batches
of ``batch_size`` networks). Two descriptions are equal exactly when their :attr:`Ensemble.key`
is: the one cache identity of stored statistics.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..core.validation import check_choice, check_inputs, check_order, check_positive_int
from ..networks.architectures import MLP, architecture_from_dict
from .estimators import ESTIMATORS

__all__ = ["Ensemble", "DTYPES", "SAMPLERS"]

#: Floating-point types of the parameter draws and forward pass (sums are always float64).
DTYPES = ("float64", "float32")
#: How a network is drawn: its parameters (``"parameters"``), or the layers' pre-activations at
#: the inputs in function space (``"gram"``: the same joint law at X, P N instead of N^2 normals
#: per layer; see :meth:`~nnqft_ppl.networks.architectures.MLP.draw_gram`).
SAMPLERS = ("parameters", "gram")


@dataclass(frozen=True, eq=False)
class Ensemble:
    """An ensemble of networks and the layout of its streamed statistics.

    Args:
        arch: the architecture.
        X: inputs ``(P, d_in)`` (``(P,)`` when ``d_in == 1``).
        width: hidden width N.
        n_networks: number of networks.
        seed: root seed; network ``a`` uses ``fold_in(PRNGKey(seed), a)``.
        max_order: highest even order of the accumulated statistics (2..8).
        n_batches: number of contiguous batches (jackknife blocks); ignored when
            ``batch_size`` is given.
        batch_size: networks per batch (default ``ceil(n_networks / n_batches)``); keep it
            fixed to extend an ensemble (:meth:`extended`).
        dtype: ``"float64"`` or ``"float32"`` parameter draws and forward pass.
        estimator: ``"kernel"`` (default: connected correlators from the last hidden layer's
            kernel, errors that do not grow with N), ``"outputs"`` (from the outputs' moments;
            the field-level likelihood needs these) or ``"both"`` (the two from the same
            networks). See :mod:`nnqft_ppl.ensembles.estimators`.
        sampler: ``"parameters"`` (default: network ``a`` is the parameter set drawn from its
            key) or ``"gram"`` (draw ``a`` is a sample of the ensemble's joint law at the
            inputs X, layer by layer in function space: exact in distribution, ``L N P``
            instead of ``~L N^2`` normals per network, so deep and wide ensembles cost ~N/P
            times less; the draws are not parameter sets and differ from the default's).

    Example:
        >>> ens = Ensemble(ErfNet(), X, width=5, n_networks=10**6, max_order=6)
        >>> ens.batch_size, ens.key
    """

    arch: MLP
    X: np.ndarray
    width: int
    n_networks: int
    seed: int = 0
    max_order: int = 4
    n_batches: int = 1000
    batch_size: int | None = None
    dtype: str = "float64"
    estimator: str = "kernel"
    sampler: str = "parameters"

    def __post_init__(self):
        if not isinstance(self.arch, MLP):
            raise ValueError(f"arch must be an architecture (e.g. nq.ErfNet()), got {self.arch!r}")
        X = check_inputs(self.X, self.arch.d_in)
        X.setflags(write=False)
        n = check_positive_int(self.n_networks, "n_networks")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int | np.integer)
            or self.seed < 0
        ):
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.batch_size is None:
            size = math.ceil(n / min(check_positive_int(self.n_batches, "n_batches"), n))
        else:
            size = check_positive_int(self.batch_size, "batch_size")
        for name, value in (
            ("X", X),
            ("width", check_positive_int(self.width, "width")),
            ("n_networks", n),
            ("seed", int(self.seed)),
            ("max_order", check_order(self.max_order, 8, "max_order")),
            ("batch_size", size),
            ("n_batches", math.ceil(n / size)),
            ("dtype", check_choice(self.dtype, DTYPES, "dtype")),
            ("estimator", check_choice(self.estimator, ESTIMATORS, "estimator")),
            ("sampler", check_choice(self.sampler, SAMPLERS, "sampler")),
        ):
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- identity
    @property
    def n_inputs(self) -> int:
        return self.X.shape[0]

    def to_dict(self) -> dict:
        """Plain JSON-able description (inverse: :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["sampler"] == "parameters":  # left out: ensembles from before the field keep keys
            del out["sampler"]
        out["arch"] = self.arch.to_dict()
        out["X"] = self.X.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Ensemble:
        data = dict(data)
        data["arch"] = architecture_from_dict(data["arch"])
        data["X"] = np.asarray(data["X"], dtype=np.float64)
        return cls(**data)

    @property
    def key(self) -> str:
        """Hash of every field: equal keys mean the same networks and the same statistics."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other) -> bool:
        return isinstance(other, Ensemble) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def replace(self, **changes) -> Ensemble:
        """A copy with some fields changed (the batch layout is recomputed unless given)."""
        if "n_networks" in changes or "n_batches" in changes:
            changes.setdefault("batch_size", None)
        return replace(self, **changes)

    def extended(self, n_networks: int) -> Ensemble:
        """The same ensemble with ``n_networks`` networks and the same batch size: its first
        networks and their batches are exactly those of this one, so a finished store extends
        to it by sampling only the new networks."""
        return replace(self, n_networks=n_networks, batch_size=self.batch_size)

    def same_networks(self, other: Ensemble) -> bool:
        """True when ``other`` has the same networks and statistics, differing at most in how
        many networks there are and how they are batched."""
        return self.replace(n_networks=1, batch_size=1) == other.replace(n_networks=1, batch_size=1)

    @property
    def label(self) -> str:
        """Short readable name, e.g. ``"ErfNet N=5"``."""
        return f"{self.arch.name} N={self.width}"
