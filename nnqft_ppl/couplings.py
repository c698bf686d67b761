"""Coupling forms, measured couplings and least-squares coupling fits (SPEC section 3).

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
models use (``mu = design @ theta`` inside the model).

Measured coupling: ``lambda_m(T) = -kappa_4(T) / (24 I_4(T; L))`` per tuple; a constant lambda
describes the ensemble when ``lambda_m`` is the same for all tuples within errors, which
:func:`fit_coupling` with :class:`Constant` tests by its chi-square.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import xarray as xr
from scipy import stats

from .architectures import MLP
from .checks import check_inputs, check_positive_int
from .feynman import NONLOCAL_FACTOR, QUARTIC_FACTOR, SEXTIC_FACTOR, pair_values
from .multisets import moments_from_cumulants, tuple_labels
from .vertex import parse_cutoffs, vertex_integral, vertex_rule, vertex_tensor

__all__ = [
    "CouplingForm",
    "Constant",
    "RadialPolynomial",
    "Polynomial",
    "NonLocal",
    "Sextic",
    "FormSum",
    "CouplingFit",
    "design_matrix",
    "measured_coupling",
    "fit_coupling",
]


# --------------------------------------------------------------------------- forms
class CouplingForm:
    """Base class: a linear family of couplings with named parameters.

    Subclasses define ``names``, ``order`` and either ``basis(y)`` (local vertices: ``(Q, d) ->
    (Q, A)`` basis-function values) or their own ``design_matrix``.
    """

    order: int = 4
    local: bool = True

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


@dataclass(frozen=True)
class Constant(CouplingForm):
    """Constant quartic coupling ``lambda f^4``: the only form translation invariance allows."""

    @property
    def names(self) -> list[str]:
        return ["lambda"]

    def basis(self, y):
        return np.ones((np.shape(y)[0], 1))


@dataclass(frozen=True)
class RadialPolynomial(CouplingForm):
    """``lambda(y) = sum_p lambda_p |y|^p``: what rotation and parity invariance allow.

    Example: ``RadialPolynomial(powers=(0, 2)).names == ["lambda_0", "lambda_2"]``.
    """

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

    degree: int = 2
    d_in: int = 1
    even: bool = False

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

    local: bool = field(default=False, init=False)

    @property
    def names(self) -> list[str]:
        return ["lambda_nl"]

    def coupling_function(self, theta):
        raise TypeError("NonLocal has no local coupling function lambda(y)")

    def couplings(self, theta) -> dict:
        return {"lambda_nl": float(_check_theta(self, theta)[0])}


@dataclass(frozen=True)
class Sextic(CouplingForm):
    """Constant sextic coupling ``kappa f^6`` (predicts the connected 6-pt function)."""

    order: int = field(default=6, init=False)

    @property
    def names(self) -> list[str]:
        return ["kappa"]

    def basis(self, y):
        return np.ones((np.shape(y)[0], 1))


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


# --------------------------------------------------------------------------- design
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
        P = X.shape[0]
        J = vertex_tensor(arch, X, (2,), rule)[2][:, 0, 0]  # J on 2-multisets
        J_full = np.zeros((P, P))
        iu = np.triu_indices(P)
        J_full[iu] = J
        J_full.T[iu] = J
        pairs = moments_from_cumulants({2: pair_values(J_full, P)}, P, 4)[4]
        return (-NONLOCAL_FACTOR * pairs)[:, None]
    factor = QUARTIC_FACTOR if form.order == 4 else SEXTIC_FACTOR
    integrals = vertex_tensor(arch, X, (form.order,), rule, form.basis)[form.order]
    return -factor * integrals[:, 0, :]


# --------------------------------------------------------------------------- measured coupling
def _as_tuple_array(values, n_inputs: int, order: int, name: str) -> xr.DataArray:
    labels = tuple_labels(n_inputs, order)
    if isinstance(values, xr.DataArray):
        if "tuple" not in values.dims:
            raise ValueError(f"{name} must have a 'tuple' dimension, got dims {values.dims}")
        if values.sizes["tuple"] != len(labels):
            raise ValueError(
                f"{name} has {values.sizes['tuple']} tuples; {n_inputs} inputs at order {order} "
                f"have {len(labels)}"
            )
        return values.assign_coords(tuple=labels)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(labels),):
        raise ValueError(
            f"{name} must have shape ({len(labels)},) (unique {order}-multisets of {n_inputs} "
            f"inputs), got {arr.shape}"
        )
    return xr.DataArray(arr, dims=("tuple",), coords={"tuple": labels})


def _as_covariance(covariance, M: int) -> np.ndarray:
    C = np.asarray(
        covariance.values if isinstance(covariance, xr.DataArray) else covariance, dtype=np.float64
    )
    if C.shape != (M, M):
        raise ValueError(f"covariance must have shape ({M}, {M}), got {C.shape}")
    if not np.all(np.isfinite(C)):
        raise ValueError("covariance contains NaN or inf")
    return 0.5 * (C + C.T)


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
    k4 = _as_tuple_array(k4, P, 4, "k4")
    I4 = vertex_integral(arch, X, 4, cutoff)
    if "cutoff" not in I4.dims:
        I4 = I4.drop_vars("cutoff")
    scale = np.abs(I4).max()
    safe = I4.where(np.abs(I4) > 1e-12 * scale)
    lam = -k4 / (QUARTIC_FACTOR * safe)
    lam.name = "lambda_m"
    lam.attrs = {"cutoff": "all space" if cutoff is None else str(cutoff)}
    if covariance is not None:
        stderr = np.sqrt(np.clip(np.diag(_as_covariance(covariance, I4.sizes["tuple"])), 0, None))
    if stderr is not None:
        err = np.abs(_as_tuple_array(stderr, P, 4, "stderr") / (QUARTIC_FACTOR * safe))
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
        chi2, dof, p_value: goodness of fit (``dof = rank - n_params``); NaN without covariance.
        rank: rank of the data covariance used (pseudo-inverse of a singular covariance).
        prediction: fitted ``design @ theta`` over ``tuple``.
        cutoff: the cutoff of the design (None: all of input space).
    """

    form: CouplingForm
    theta: np.ndarray
    covariance: np.ndarray
    chi2: float
    dof: int
    p_value: float
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
        return xr.DataArray(
            D @ self.theta,
            dims=("tuple",),
            coords={"tuple": tuple_labels(P, self.form.order), "stderr": ("tuple", err)},
            name=f"kappa_{self.form.order}",
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


def generalized_least_squares(D, k, covariance=None, rtol: float = 1e-12):
    """GLS of ``k ~ D theta`` with data covariance C (pseudo-inverse where C is singular).

    Returns ``(theta, theta_cov, chi2, rank)``. Without covariance: ordinary least squares
    with the parameter covariance scaled by the residual variance, and ``chi2 = NaN``.
    """
    D = np.asarray(D, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    M, p = D.shape
    if covariance is None:
        white_D, white_k, rank = D, k, M
    else:
        C = _as_covariance(covariance, M)
        evals, evecs = np.linalg.eigh(C)
        keep = evals > rtol * max(evals.max(), 0.0)
        if not keep.any():
            raise ValueError("covariance is zero or not positive semi-definite")
        rank = int(keep.sum())
        W = evecs[:, keep].T / np.sqrt(evals[keep])[:, None]
        white_D, white_k = W @ D, W @ k
    # Scale columns: design entries of different basis functions differ by many decades.
    col = np.linalg.norm(white_D, axis=0)
    if np.any(col == 0):
        bad = int(np.argmin(col))
        raise ValueError(f"parameter {bad} does not affect the prediction (zero design column)")
    A = white_D / col
    theta_s, *_ = np.linalg.lstsq(A, white_k, rcond=None)
    gram = A.T @ A
    if np.linalg.cond(gram) > 1e14:
        raise ValueError(
            "the parameters are not identified by these data (design matrix of rank "
            f"{np.linalg.matrix_rank(A)} < {p})"
        )
    cov_s = np.linalg.inv(gram)
    theta = theta_s / col
    cov = cov_s / np.outer(col, col)
    resid = white_k - white_D @ theta
    chi2 = float(resid @ resid)
    if covariance is None:
        dof = M - p
        cov = cov * (chi2 / dof if dof > 0 else np.nan)
        chi2 = np.nan
    return theta, cov, chi2, rank


def fit_coupling(
    form: CouplingForm, arch: MLP, X, k, covariance=None, cutoff=None, rcond: float = 1e-12
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
        rcond: covariance eigenvalues below ``rcond`` times the largest are dropped
            (pseudo-inverse). Close inputs give covariances whose eigenvalues span many decades;
            the smallest directions (differences between nearby tuples) are measured very
            precisely, so a first-order form that misses them is rejected there: raise
            ``rcond``, or pass only the diagonal, to fit the per-tuple values as the paper did.

    Returns:
        :class:`CouplingFit` with estimates, covariance, chi2, dof, p-value and rank.

    Example:
        >>> fit = fit_coupling(Constant(), arch, X, stats.cumulant(4), stats.covariance(4), 2.0)
        >>> fit.parameters, fit.p_value
    """
    X = check_inputs(X, arch.d_in)
    P = X.shape[0]
    k = _as_tuple_array(k, P, form.order, f"k{form.order}")
    if k.ndim != 1:
        raise ValueError(f"k must be one-dimensional over 'tuple', got dims {k.dims}")
    D = form.design_matrix(arch, X, cutoff)
    theta, cov, chi2, rank = generalized_least_squares(D, k.values, covariance, rcond)
    dof = rank - form.n_params
    p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 and np.isfinite(chi2) else np.nan
    prediction = xr.DataArray(
        D @ theta, dims=("tuple",), coords={"tuple": k.tuple.values}, name="prediction"
    )
    return CouplingFit(
        form,
        theta,
        cov,
        chi2,
        dof,
        p_value,
        rank,
        prediction,
        None if cutoff is None else float(cutoff),
    )
