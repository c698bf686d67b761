"""Coupling forms, measured couplings and least-squares coupling fits (docs/physics.md §3).

A *coupling form* is a linear family of interactions ``theta -> S_int``; to first order its
prediction of a connected correlator on index multisets is ``design @ theta`` with the design
matrix from the Feynman rules (:mod:`nnqft_ppl.feynman`):

=========================  ==================  =====  ============================================
form                       names               order  column a of the design matrix
=========================  ==================  =====  ============================================
``Constant()``             lambda              4      ``-24 int prod_4 K_int``
``RadialPolynomial(p)``    lambda_0, lambda_2  4      ``-24 int |y|^p prod_4 K_int``
``Polynomial(deg, d_in)``  lambda_0, lambda_y0 4      ``-24 int y^alpha prod_4 K_int``
``NonLocal()``             lambda_nl           4      ``-8 sum_3 J J``
``Sextic()``               kappa               6      ``-720 int prod_6 K_int``
``form_a + form_b``        both                same   both blocks of columns
=========================  ==================  =====  ============================================

This ``design_matrix(arch, X, cutoff)`` / ``names`` / ``order`` interface is what the NumPyro
models use (``mu = design @ theta`` inside the model). Each form class is registered under a short
``key`` (:data:`COUPLING_FORMS`: ``constant``, ``radial``, ``polynomial``, ``nonlocal``,
``sextic``) that specs and the command line accept, also as sums ``"constant+nonlocal"``
(:func:`coupling_form`); a new form is one subclass with a ``key``.

Measured coupling: ``lambda_m(T) = -kappa_4(T) / (24 I_4(T; L))`` per tuple; a constant lambda
describes the ensemble when ``lambda_m`` is the same for all tuples within errors, which
:func:`fit_coupling` with :class:`Constant` tests by its chi-square.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..core.linalg import (
    ChiSquare,
    as_covariance,
    generalized_least_squares,
    ordinary_least_squares,
)
from ..core.precision import float64
from ..core.registry import Registry
from ..core.tuples import as_tuple_array, tuple_array
from ..core.validation import check_inputs, check_positive_int
from ..networks.architectures import MLP
from ..networks.kernels import interaction_matrix
from .feynman import QUARTIC_FACTOR, SEXTIC_FACTOR, nonlocal_quartic
from .vertex import parse_cutoffs, vertex_integral, vertex_rule, vertex_tensor

__all__ = [
    "CouplingForm",
    "Constant",
    "RadialPolynomial",
    "Polynomial",
    "NonLocal",
    "Sextic",
    "FormSum",
    "COUPLING_FORMS",
    "coupling_form",
    "CouplingFit",
    "design_matrix",
    "measured_coupling",
    "fit_coupling",
]


# --------------------------------------------------------------------------- forms
#: Coupling-form classes by key (filled by subclasses of :class:`CouplingForm` with a ``key``).
COUPLING_FORMS: Registry[type] = Registry("coupling form")


class CouplingForm:
    """Base class: a linear family of couplings with named parameters.

    Subclasses define ``names``, ``order`` and either ``basis(y)`` (local vertices: ``(Q, d) ->
    (Q, A)`` basis-function values) or their own ``design_matrix``. A subclass with a ``key``
    is registered; :meth:`standard` gives the instance that name stands for in specs and on the
    command line.
    """

    key: ClassVar[str] = ""
    order: int = 4
    local: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("key"):
            COUPLING_FORMS.register(cls.key, cls)

    @classmethod
    def standard(cls, d_in: int = 1) -> CouplingForm:
        """The instance the form's key stands for (default arguments; ``d_in`` where needed)."""
        return cls()

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    @property
    def n_params(self) -> int:
        return len(self.names)

    def basis(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def design_matrix(self, arch: MLP, X, cutoff=None) -> np.ndarray:
        """``(M_order, n_params)`` float64: first-order connected correlator = ``design @ theta``.

        ``cutoff``: one cutoff L > 0, or None for all of input space (Gauss-net only).
        """
        return design_matrix(self, arch, X, cutoff)

    def coupling_function(self, theta):
        """``lambda(y) = sum_a theta_a B_a(y)`` as a function ``(Q, d) -> (Q,)``."""
        theta = _check_theta(self, theta)
        return lambda y: self.basis(np.asarray(y)) @ theta

    def couplings(self, theta) -> dict:
        """Keyword arguments of :func:`nnqft_ppl.feynman.eft_cumulants` for parameters ``theta``."""
        key = "quartic" if self.order == 4 else "sextic"
        return {key: self.coupling_function(theta)}

    def __add__(self, other: CouplingForm) -> FormSum:
        return FormSum((self, other))


def _check_theta(form: CouplingForm, theta) -> np.ndarray:
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    if theta.shape != (form.n_params,):
        raise ValueError(
            f"theta must have one value per parameter {form.names}, got shape {theta.shape}"
        )
    return theta


class _Uniform(CouplingForm):
    """A coupling that is the same everywhere: one basis function, 1."""

    def basis(self, y):
        return np.ones((np.shape(y)[0], 1))


@dataclass(frozen=True)
class Constant(_Uniform):
    """Constant quartic coupling ``lambda f^4``: the only form translation invariance allows."""

    key: ClassVar[str] = "constant"

    @property
    def names(self) -> list[str]:
        return ["lambda"]


@dataclass(frozen=True)
class RadialPolynomial(CouplingForm):
    """``lambda(y) = sum_p lambda_p |y|^p``: what rotation and parity invariance allow.

    Example: ``RadialPolynomial(powers=(0, 2)).names == ["lambda_0", "lambda_2"]``.
    """

    key: ClassVar[str] = "radial"
    powers: tuple[int, ...] = (0, 2)

    def __post_init__(self):
        powers = tuple(self.powers)
        if (
            not powers
            or len(set(powers)) != len(powers)
            or any(not isinstance(p, int) or p < 0 for p in powers)
        ):
            raise ValueError(f"powers must be distinct integers >= 0, got {self.powers!r}")
        object.__setattr__(self, "powers", powers)

    @property
    def names(self) -> list[str]:
        return [f"lambda_{p}" for p in self.powers]

    def basis(self, y):
        r = np.linalg.norm(np.asarray(y), axis=-1)
        return r[:, None] ** np.array(self.powers)[None, :]


@dataclass(frozen=True)
class Polynomial(CouplingForm):
    """``lambda(y) = sum_alpha lambda_alpha y^alpha`` over monomials of total degree <= ``degree``.

    ``even=True`` keeps even degrees only (what parity allows). Names: ``lambda_0`` for the
    constant, ``lambda_y0``, ``lambda_y0y1``, ... (one factor ``y_j`` per letter pair).
    Example: ``Polynomial(degree=2).names == ["lambda_0", "lambda_y0", "lambda_y0y0"]``.
    """

    key: ClassVar[str] = "polynomial"
    degree: int = 2
    d_in: int = 1
    even: bool = False

    @classmethod
    def standard(cls, d_in: int = 1) -> Polynomial:
        return cls(degree=2, d_in=d_in)

    def __post_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, int) or self.degree < 0:
            raise ValueError(f"degree must be an integer >= 0, got {self.degree!r}")
        check_positive_int(self.d_in, "d_in")

    @cached_property
    def exponents(self) -> tuple[tuple[int, ...], ...]:
        """Multisets of coordinates, one per monomial (``()`` is the constant)."""
        out = []
        for k in range(self.degree + 1):
            if self.even and k % 2:
                continue
            out += list(itertools.combinations_with_replacement(range(self.d_in), k))
        return tuple(out)

    @property
    def names(self) -> list[str]:
        return ["lambda_" + ("".join(f"y{j}" for j in e) or "0") for e in self.exponents]

    def basis(self, y):
        y = np.asarray(y)
        if y.shape[-1] != self.d_in:
            raise ValueError(f"Polynomial(d_in={self.d_in}) got points of dimension {y.shape[-1]}")
        return np.stack([np.prod(y[:, list(e)], axis=1) for e in self.exponents], axis=1)


@dataclass(frozen=True)
class NonLocal(CouplingForm):
    """Non-local quartic term ``lambda_nl int int f(y)^2 f(z)^2``."""

    key: ClassVar[str] = "nonlocal"
    local: bool = field(default=False, init=False)

    @property
    def names(self) -> list[str]:
        return ["lambda_nl"]

    def coupling_function(self, theta):
        raise TypeError("NonLocal has no local coupling function lambda(y)")

    def couplings(self, theta) -> dict:
        return {"lambda_nl": float(_check_theta(self, theta)[0])}


@dataclass(frozen=True)
class Sextic(_Uniform):
    """Constant sextic coupling ``kappa f^6`` (predicts the connected 6-pt function)."""

    key: ClassVar[str] = "sextic"
    order: int = field(default=6, init=False)

    @property
    def names(self) -> list[str]:
        return ["kappa"]


@dataclass(frozen=True)
class FormSum(CouplingForm):
    """Sum of forms of one order: columns side by side, ``theta`` split in the same order."""

    terms: tuple[CouplingForm, ...] = ()

    def __post_init__(self):
        flat = []
        for term in self.terms:
            flat += list(term.terms) if isinstance(term, FormSum) else [term]
        if not flat:
            raise ValueError("FormSum needs at least one form")
        orders = {t.order for t in flat}
        if len(orders) > 1:
            raise ValueError(f"cannot add forms of different orders {sorted(orders)}")
        names = [n for t in flat for n in t.names]
        if len(set(names)) != len(names):
            raise ValueError(f"forms in a sum must have distinct parameter names, got {names}")
        object.__setattr__(self, "terms", tuple(flat))

    @property
    def order(self) -> int:  # type: ignore[override]
        return self.terms[0].order

    @property
    def names(self) -> list[str]:
        return [n for t in self.terms for n in t.names]

    def _split(self, theta) -> list[np.ndarray]:
        theta = _check_theta(self, theta)
        edges = np.cumsum([0] + [t.n_params for t in self.terms])
        return [theta[a:b] for a, b in itertools.pairwise(edges)]

    def design_matrix(self, arch, X, cutoff=None):
        return np.concatenate([t.design_matrix(arch, X, cutoff) for t in self.terms], axis=1)

    def coupling_function(self, theta):
        parts = [(t, th) for t, th in zip(self.terms, self._split(theta), strict=True) if t.local]
        functions = [t.coupling_function(th) for t, th in parts]
        return lambda y: sum(f(y) for f in functions)

    def couplings(self, theta) -> dict:
        out = {}
        local = any(t.local for t in self.terms)
        if local:
            out["quartic" if self.order == 4 else "sextic"] = self.coupling_function(theta)
        for t, th in zip(self.terms, self._split(theta), strict=True):
            if not t.local:
                out |= t.couplings(th)
        return out


def coupling_form(name: str, d_in: int = 1) -> CouplingForm:
    """The form a spec or command line names: a registered key, or keys joined by ``+``.

    Example:
        >>> coupling_form("constant+nonlocal")     # Constant() + NonLocal()
    """
    parts = [COUPLING_FORMS.get_or_raise(p.strip()).standard(d_in) for p in str(name).split("+")]
    return parts[0] if len(parts) == 1 else FormSum(tuple(parts))


# --------------------------------------------------------------------------- design
@float64
def design_matrix(form: CouplingForm, arch: MLP, X, cutoff=None) -> np.ndarray:
    """First-order design matrix of ``form``: ``(C(P+n-1, n), n_params)``, n = ``form.order``.

    Example:
        >>> D = Constant().design_matrix(ReLUNet(), X, cutoff=2.0)    # (126, 1) for P = 6
        >>> k4_pred = D @ np.array([-1e-3])
    """
    if isinstance(form, FormSum):
        return form.design_matrix(arch, X, cutoff)
    X = check_inputs(X, arch.d_in)
    cutoffs, is_sequence = parse_cutoffs(cutoff)
    if is_sequence:
        raise ValueError("design_matrix takes one cutoff (a number or None), not a sequence")
    rule = vertex_rule(arch, X, cutoff)
    if not form.local:
        Kx = interaction_matrix(arch, jnp.asarray(X), jnp.asarray(rule.nodes))
        return np.asarray(nonlocal_quartic(Kx, jnp.asarray(rule.weights[:, 0])))[:, None]
    factor = QUARTIC_FACTOR if form.order == 4 else SEXTIC_FACTOR
    integrals = vertex_tensor(arch, X, (form.order,), rule, form.basis)[form.order]
    return -factor * integrals[:, 0, :]


# --------------------------------------------------------------------------- measured coupling
@float64
def measured_coupling(arch: MLP, X, k4, cutoff=None, *, stderr=None, covariance=None):
    """Measured quartic coupling per tuple, ``lambda_m = -kappa_4 / (24 I_4(T; L))``.

    Args:
        arch: architecture (gives ``I_4``).
        X: inputs ``(P, d_in)``.
        k4: connected 4-pt values: an xarray over ``tuple`` (other dimensions, e.g. ``width``,
            broadcast), a ``(C(P+3, 4),)`` array, or a correlator-statistics object with
            ``.cumulant(4)`` and ``.stderr(4)`` (whose errors are then used).
        cutoff: L, a sequence of cutoffs (adds ``cutoff``), or None (all space, Gauss-net).
        stderr: optional standard errors of ``k4`` (same shape).
        covariance: optional ``(M, M)`` covariance of ``k4``; its diagonal gives the errors.

    Returns:
        xarray ``lambda_m`` over ``tuple`` (and ``cutoff``); with errors, a coordinate
        ``stderr`` of the same shape (``lam.stderr``). Tuples with ``I_4 = 0`` (no vertex couples
        them, e.g. ReLU with sb0 = 0 and inputs of both signs) get NaN.

    Example:
        >>> k4 = nq.exact_cumulant(GaussNet(sb0=0.5), X, width=100)
        >>> lam = measured_coupling(GaussNet(sb0=0.5), X, k4)      # all of input space
    """
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    if hasattr(k4, "cumulant") and hasattr(k4, "stderr") and callable(k4.cumulant):
        if stderr is None and covariance is None:
            stderr = k4.stderr(4)
        k4 = k4.cumulant(4)
    k4 = as_tuple_array(k4, P, 4, "k4")
    I4 = vertex_integral(arch, X, 4, cutoff)
    if "cutoff" not in I4.dims:
        I4 = I4.drop_vars("cutoff")
    scale = np.abs(I4).max()
    safe = I4.where(np.abs(I4) > 1e-12 * scale)
    lam = -k4 / (QUARTIC_FACTOR * safe)
    lam.name = "lambda_m"
    lam.attrs = {"cutoff": "all space" if cutoff is None else str(cutoff)}
    if covariance is not None:
        stderr = np.sqrt(np.clip(np.diag(as_covariance(covariance, I4.sizes["tuple"])), 0, None))
    if stderr is not None:
        err = np.abs(as_tuple_array(stderr, P, 4, "stderr") / (QUARTIC_FACTOR * safe))
        lam = lam.assign_coords(stderr=err.transpose(*lam.dims))
    return lam


# --------------------------------------------------------------------------- fit
@dataclass(frozen=True)
class CouplingFit:
    """Result of :func:`fit_coupling` (generalised least squares).

    Attributes:
        form: the coupling form.
        theta: ``(n_params,)`` estimates; ``parameters`` gives them as an xarray over ``coupling``.
        covariance: ``(n_params, n_params)`` parameter covariance.
        chi_square: goodness of fit on ``rank - n_params`` dof (value NaN without a covariance).
        rank: resolved rank of the data covariance (the independent numbers the data hold).
        prediction: fitted ``design @ theta`` over ``tuple``.
        cutoff: the cutoff of the design (None: all of input space).
    """

    form: CouplingForm
    theta: np.ndarray
    covariance: np.ndarray
    chi_square: ChiSquare
    rank: int
    prediction: xr.DataArray
    cutoff: float | None

    @property
    def names(self) -> list[str]:
        return self.form.names

    @property
    def stderr(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    @property
    def chi2(self) -> float:
        return self.chi_square.value

    @property
    def dof(self) -> int:
        return self.chi_square.dof

    @property
    def p_value(self) -> float:
        return self.chi_square.p_value

    @property
    def parameters(self) -> xr.DataArray:
        """Estimates over ``coupling`` with a ``stderr`` coordinate."""
        return xr.DataArray(
            self.theta,
            dims=("coupling",),
            coords={"coupling": self.names, "stderr": ("coupling", self.stderr)},
            name="theta",
        )

    def predict(self, arch: MLP, X, cutoff="same") -> xr.DataArray:
        """First-order prediction at other inputs, with propagated ``stderr`` coordinate."""
        cutoff = self.cutoff if isinstance(cutoff, str) and cutoff == "same" else cutoff
        D = self.form.design_matrix(arch, X, cutoff)
        err = np.sqrt(np.clip(np.einsum("ma,ab,mb->m", D, self.covariance, D), 0, None))
        P = check_inputs(X, arch.d_in).shape[0]
        return tuple_array(
            D @ self.theta,
            P,
            self.form.order,
            f"kappa_{self.form.order}",
            coords={"stderr": ("tuple", err)},
        )

    def summary(self) -> str:
        rows = [
            f"{n} = {t:.6g} +- {s:.2g}"
            for n, t, s in zip(self.names, self.theta, self.stderr, strict=True)
        ]
        rows.append(
            f"chi2 = {self.chi2:.4g} on {self.dof} dof (p = {self.p_value:.3g}, rank {self.rank})"
        )
        return "\n".join(rows)


@float64
def fit_coupling(
    form: CouplingForm, arch: MLP, X, k, covariance=None, cutoff=None, rtol: float | None = None
) -> CouplingFit:
    """Least-squares fit of a coupling form to measured connected correlators.

    Minimises ``(k - D theta)^T C^+ (k - D theta)`` with the design ``D`` of ``form`` and the
    (pseudo-inverted, rank-revealing) covariance C of the estimates ``k``.

    Args:
        form: coupling form (its ``order`` must match ``k``).
        arch: architecture; X: inputs ``(P, d_in)``.
        k: connected correlator over ``tuple`` (xarray or ``(M,)`` array).
        covariance: ``(M, M)`` covariance of ``k`` (e.g. ``stats.covariance(4)`` or
            ``nq.exact_covariance(...) / n_networks``); None for ordinary least squares.
        cutoff: L, or None for all of input space (Gauss-net).
        rtol: covariance eigenvalues below ``rtol`` times the largest are dropped (default
            :data:`~nnqft_ppl.core.linalg.DEFAULT_RTOL`). Close inputs give covariances whose
            eigenvalues span many decades; the smallest directions (differences between nearby
            tuples) are measured very precisely, so a first-order form that misses them is
            rejected there: raise ``rtol``, or pass only the diagonal, to fit the per-tuple
            values.

    Returns:
        :class:`CouplingFit` with estimates, covariance, chi-square and rank.

    Example:
        >>> fit = fit_coupling(Constant(), arch, X, stats.cumulant(4), stats.covariance(4), 2.0)
        >>> fit.parameters, fit.p_value
    """
    X = check_inputs(X, arch.d_in)
    k = as_tuple_array(k, X.shape[0], form.order, f"k{form.order}")
    if k.ndim != 1:
        raise ValueError(f"k must be one-dimensional over 'tuple', got dims {k.dims}")
    D = form.design_matrix(arch, X, cutoff)
    if covariance is None:
        ls = ordinary_least_squares(D, k.values)
    else:
        kwargs = {} if rtol is None else {"rtol": rtol}
        ls = generalized_least_squares(D, k.values, covariance, **kwargs)
    prediction = k.copy(data=D @ ls.theta).rename("prediction")
    return CouplingFit(
        form,
        ls.theta,
        ls.covariance,
        ls.chi_square,
        ls.rank,
        prediction,
        None if cutoff is None else float(cutoff),
    )
