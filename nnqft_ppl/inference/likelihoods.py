"""NGP likelihoods as NumPyro building blocks (docs/physics.md §4).

Two likelihoods for the couplings ``theta`` of a coupling form (:mod:`nnqft_ppl.couplings`),
both linear-Gaussian in ``theta`` at first order, and a few helpers to compose models.

**Correlator likelihood** (:class:`CorrelatorData`). The unique connected-correlator estimates
``k`` (kappa_4, or kappa_6 for a sextic form) with covariance ``C``:
``k ~ MultivariateNormal(D theta, C)``, ``D`` the form's design matrix. ``C`` is numerically
singular for close inputs (the paper's ``X = [-0.01 .. 0.01]``: 126 entries, eigenvalues over
16 decades), so the likelihood is evaluated on the eigenvectors of ``C`` whose eigenvalues
exceed ``rtol`` times the largest: ``z = W k ~ N(W D theta, 1)`` with ``W = Lambda_r^-1/2 U_r^T``
(``rank`` components, stored and reported). Directions below the cutoff are dropped, not
regularised: they carry no trustworthy information (their eigenvalues are at rounding level).

**Field-level likelihood** (:class:`FieldStatistics`). First-order EFT marginal of the outputs
``f_X``: ``p(f) = N(f; 0, K) exp(-theta . A(f)) / Z(theta)`` with one statistic per basis
function ``B_c`` of the form (order n = 4 or 6):

    A_c(f) = int dy B_c(y) E_GP[ :f(y)^n: | f_X ] = int dy B_c(y) He_n(m(y); v(y)),
    m(y) = K_int(y, X) K^+ f_X,   v(y) = Var_GP m(y) = K_int(y, X) K^+ K_int(X, y),

``He_4(m; v) = m^4 - 6 v m^2 + 3 v^2`` (``He_6 = m^6 - 15 v m^4 + 45 v^2 m^2 - 15 v^3``).
Normal ordering ``:f^n:`` is the tadpole counterterm of docs/physics.md §3 (it keeps the 2-pt
function equal to K); it is also what makes this likelihood agree with the correlator one:
``E_theta[A] = -S theta`` reproduces ``kappa_n = D theta`` exactly (checked on construction).
``K^+`` is the pseudo-inverse on the eigenvectors of K above ``rtol`` (conditioning on the
well-determined components of ``f_X`` is still exact GP conditioning).

*log Z.* With ``lambda < 0`` the truncated action is unbounded below and ``Z`` diverges; the
likelihood uses the perturbative (asymptotic) normaliser, the second-order cumulant expansion
``log Z(theta) = -theta . mu + theta^T S theta / 2 + O(theta^3)`` with ``mu = E_GP[A] = 0``
(normal ordering) and ``S = Cov_GP(A) = n! int int B_c B_c' (K_int K^+ K_int)^n`` exact by
Isserlis. The summed log-likelihood is then ``-N_net (theta . Abar + theta^T S theta / 2)``:
it depends on the data only through ``Abar`` (from the streamed moment sums), so an MCMC step
costs the same for 1e3 or 1e8 networks. :meth:`FieldStatistics.log_normaliser_shift` gives
the shift of the estimate from the next (cubic) term of log Z, in posterior standard
deviations. Equivalently ``Abar ~ N(-S theta, S / N_net)`` (model-based width). Heavy-tailed
ensembles (Gauss-net with sb0 = 1) make the spread ``V = Cov(A)`` of the statistic over the
networks much larger than ``S``; ``width="sandwich"`` (default) uses ``Abar ~ N(-S theta,
V / N_net)``, whose posterior width is the sandwich ``S^-1 V S^-1 / N_net``.

**Building blocks**: :func:`sample_couplings`, :func:`correlator_factor`,
:func:`field_factor`, and the ready models :func:`correlator_model`, :func:`field_model`,
:func:`width_power_law_model` (``lambda_N = c (N / N_ref)^-a`` across widths).

Example::

    stats = nq.correlators(nq.ErfNet(), X, width=5, n_networks=10**5)
    data = correlator_data(stats, form=nq.couplings.Constant(), cutoff=2.0)
    def model(data):
        theta = sample_couplings(data.names, scales=data.prior_scale)
        correlator_factor(data, theta)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..core.linalg import DEFAULT_RTOL, LeastSquares, whitened_least_squares, whitening
from ..core.multisets import gp_moments, monomials, multiplicities, tuple_labels, union_ranks
from ..core.precision import float64
from ..core.validation import check_choice
from ..networks.architectures import MLP
from ..networks.kernels import interaction_matrix, kernel
from ..oracle.exact import exact_moments
from ..theory.couplings import Constant, CouplingForm
from ..theory.vertex import vertex_rule

__all__ = [
    "DEFAULT_RTOL",
    "CorrelatorData",
    "correlator_data",
    "FieldStatistics",
    "field_statistics",
    "FieldEstimate",
    "GaussianPosterior",
    "gaussian_posterior",
    "field_rtol",
    "default_prior_scale",
    "hermite_coefficients",
    "sample_couplings",
    "correlator_factor",
    "field_factor",
    "correlator_model",
    "field_model",
    "width_power_law_model",
]

#: Kernel components below this fraction of the largest are never conditioned on.
_MIN_FIELD_RTOL = 1e-9
#: The projected field must reproduce the first-order Feynman rules to this accuracy.
_IDENTITY_TOL = 1e-6
COVARIANCE_METHODS = ("auto", "exact", "jackknife")
SANDWICH_METHODS = ("auto", "exact", "batch")
WIDTHS = ("sandwich", "model")


# --------------------------------------------------------------------------- helpers
def _check_form(form) -> CouplingForm:
    if not isinstance(form, CouplingForm):
        raise ValueError(
            f"form must be a coupling form (e.g. nq.couplings.Constant()), got {form!r}"
        )
    return form


def default_prior_scale(arch: MLP, X, design: np.ndarray, order: int) -> np.ndarray:
    """Per coupling: the value whose first-order correlator equals the free one (RMS).

    Beyond it the correction is 100% of the GP correlator and perturbation theory, hence
    the first-order likelihood, has broken down: a physical, not a tuned, prior width.
    ``design (M, p)``; returns ``(p,)``.
    """
    gp_scale = float(np.sqrt(np.mean(np.asarray(gp_moments(kernel(arch, X), order)[order]) ** 2)))
    return _scale_of(design, gp_scale)


def _scale_of(design: np.ndarray, scale: float) -> np.ndarray:
    """``scale`` divided by the RMS of each design column."""
    col = np.sqrt(np.mean(design**2, axis=0))
    if np.any(col == 0):
        raise ValueError("a coupling does not affect the prediction (zero design column)")
    return scale / col


# --------------------------------------------------------------------------- correlators
@dataclass(frozen=True)
class CorrelatorData:
    """Measured connected correlators of one order, with their projected covariance.

    Attributes:
        names: coupling names (the form's), length p.
        order: correlator order n (4 or 6).
        labels: tuple labels ``"i,j,k,l"`` (length M).
        observed: ``(M,)`` measured ``kappa_n``.
        design: ``(M, p)`` first-order prediction ``kappa_n = design @ theta``.
        covariance: ``(M, M)`` covariance of ``observed``.
        whitener: ``(rank, M)``: ``whitener @ observed ~ N(whitener @ design @ theta, 1)``.
        root: ``(M, rank)`` with ``root @ root.T`` = the kept part of ``covariance``.
        prior_scale: ``(p,)`` default prior standard deviations (see :func:`correlator_data`).
        covariance_method, rtol, n_networks, width: provenance.
    """

    names: tuple
    order: int
    labels: tuple
    observed: np.ndarray
    design: np.ndarray
    covariance: np.ndarray
    whitener: np.ndarray = field(repr=False)
    root: np.ndarray = field(repr=False)
    prior_scale: np.ndarray
    covariance_method: str = "given"
    rtol: float = DEFAULT_RTOL
    n_networks: int | None = None
    width: int | None = None

    @classmethod
    def from_arrays(
        cls,
        names,
        observed,
        design,
        covariance,
        order: int = 4,
        prior_scale=None,
        rtol: float = DEFAULT_RTOL,
        labels=None,
        **provenance,
    ) -> CorrelatorData:
        """Build from plain arrays (``observed (M,)``, ``design (M, p)``, ``covariance (M, M)``).

        ``prior_scale`` defaults to ``RMS(observed) / RMS(design column)`` times 10 only when
        no architecture is known; :func:`correlator_data` uses the GP scale instead.
        """
        observed = np.asarray(observed, dtype=np.float64).reshape(-1)
        design = np.asarray(design, dtype=np.float64)
        M = observed.shape[0]
        names = tuple(names)
        if design.shape != (M, len(names)):
            raise ValueError(
                f"design must have shape ({M}, {len(names)}) (tuples, couplings {list(names)}), "
                f"got {design.shape}"
            )
        C = np.asarray(covariance, dtype=np.float64)
        if C.shape != (M, M) or not np.all(np.isfinite(C)):
            raise ValueError(f"covariance must be a finite ({M}, {M}) matrix, got {C.shape}")
        w = whitening(C, rtol)
        whitener, root = w.whitener, w.root
        if prior_scale is None:
            prior_scale = _scale_of(design, 10 * np.sqrt(np.mean(observed**2)))
        prior_scale = np.broadcast_to(np.asarray(prior_scale, np.float64), (len(names),)).copy()
        labels = tuple(labels) if labels is not None else tuple(str(i) for i in range(M))
        return cls(
            names, order, labels, observed, design, 0.5 * (C + C.T), whitener, root,
            prior_scale, rtol=rtol, **provenance,
        )  # fmt: skip

    # ---------------------------------------------------------------- projected problem
    @property
    def rank(self) -> int:
        """Number of covariance eigenvectors kept."""
        return self.whitener.shape[0]

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def white_observed(self) -> np.ndarray:
        return self.whitener @ self.observed

    @property
    def white_design(self) -> np.ndarray:
        return self.whitener @ self.design

    def least_squares(self) -> LeastSquares:
        """GLS estimate on the kept directions (``.theta (p,)``, ``.covariance (p, p)``,
        ``.chi_square`` on ``rank - p`` dof)."""
        try:
            return whitened_least_squares(self.white_design, self.white_observed)
        except ValueError as err:
            raise ValueError(f"couplings {list(self.names)}: {err}") from None

    def chi2(self, theta) -> np.ndarray:
        """``|W (k - D theta)|^2`` for ``theta (..., p)``; ``rank - p`` degrees of freedom."""
        r = self.white_observed - np.asarray(theta) @ self.white_design.T
        return np.sum(r**2, axis=-1)

    @float64
    def log_likelihood(self, theta):
        """Log-likelihood per whitened component: ``theta (..., p) -> (..., rank)``."""
        r = jnp.asarray(self.white_observed) - jnp.asarray(theta) @ jnp.asarray(self.white_design.T)
        return -0.5 * r**2 - 0.5 * math.log(2 * math.pi)

    def predict(self, theta) -> np.ndarray:
        """First-order ``kappa_n`` for ``theta (..., p)``: ``(..., M)``."""
        return np.asarray(theta) @ self.design.T

    def replicate(self, theta, rng: np.random.Generator) -> np.ndarray:
        """Replicated measurements ``D theta + noise`` (kept covariance): ``(..., M)``."""
        theta = np.asarray(theta)
        eps = rng.standard_normal(theta.shape[:-1] + (self.rank,))
        return self.predict(theta) + eps @ self.root.T

    def select(self, keep) -> CorrelatorData:
        """The same data restricted to the tuples where ``keep`` (bool ``(M,)``) is True."""
        keep = np.asarray(keep, dtype=bool)
        return CorrelatorData.from_arrays(
            self.names,
            self.observed[keep],
            self.design[keep],
            self.covariance[np.ix_(keep, keep)],
            self.order,
            self.prior_scale,
            self.rtol,
            np.asarray(self.labels)[keep],
            covariance_method=self.covariance_method,
            n_networks=self.n_networks,
            width=self.width,
        )

    def simulate(self, theta, rng: np.random.Generator) -> CorrelatorData:
        """Data simulated from this likelihood at couplings ``theta (p,)`` (calibration)."""
        return replace(self, observed=self.replicate(np.asarray(theta, np.float64), rng))


@float64
def correlator_data(
    stats,
    form: CouplingForm | None = None,
    *,
    cutoff=None,
    covariance="auto",
    rtol: float = DEFAULT_RTOL,
    estimator: str | None = None,
) -> CorrelatorData:
    """Correlator-likelihood data from measured correlators.

    Args:
        stats: :class:`~nnqft_ppl.ensembles.correlators.CorrelatorStats` (``nq.correlators``);
            it knows the architecture and inputs.
        form: coupling form (default ``Constant()``); its ``order`` picks kappa_4 or kappa_6.
        cutoff: box cutoff L of the vertex integrals, or None (all space; Gauss-net only).
        covariance: ``"auto"`` (exact sampling covariance for kappa_4 of single-hidden-layer
            nets, the honest one for heavy tails; jackknife otherwise), ``"exact"``,
            ``"jackknife"``, or an ``(M, M)`` array.
        rtol: eigenvalues of the covariance below ``rtol * max`` are dropped (projection).
        estimator: which measured correlators (``"kernel"`` or ``"outputs"``; default the
            ensemble's own, the kernel estimator when it was accumulated).

    Returns:
        :class:`CorrelatorData`; default priors ``Normal(0, prior_scale)`` with ``prior_scale``
        the coupling whose first-order correlator is as large (RMS) as the free GP one.

    Example:
        >>> data = correlator_data(stats, form=Constant(), cutoff=2.0)
        >>> data.rank, data.least_squares()
    """
    form = _check_form(Constant() if form is None else form)
    arch, X = stats.arch, stats.X
    order = form.order
    k = stats.cumulant(order, estimator)
    estimator = k.attrs["estimator"]
    if isinstance(covariance, str):
        check_choice(covariance, COVARIANCE_METHODS, "covariance")
        exact_ok = order == 4 and arch.depth == 1
        method = ("exact" if exact_ok else "jackknife") if covariance == "auto" else covariance
        C = stats.covariance(order, method=method, estimator=estimator).values
    else:
        method, C = "given", np.asarray(covariance, dtype=np.float64)
    design = form.design_matrix(arch, X, cutoff)
    return CorrelatorData.from_arrays(
        form.names,
        k.values,
        design,
        C,
        order,
        default_prior_scale(arch, X, design, order),
        rtol,
        tuple_labels(X.shape[0], order),
        covariance_method=f"{method} ({estimator} estimator)",
        n_networks=stats.n_networks,
        width=stats.width,
    )


# --------------------------------------------------------------------------- field level
def hermite_coefficients(order: int) -> dict[int, float]:
    """``He_n(m; v) = sum_j c_j v^((n-j)/2) m^j``: ``{j: c_j}`` (probabilists' Hermite).

    Example: ``hermite_coefficients(4) == {4: 1.0, 2: -6.0, 0: 3.0}``.
    """
    out = {}
    for k in range(order // 2 + 1):
        j = order - 2 * k
        out[j] = (-1) ** k * math.factorial(order) / (math.factorial(k) * 2**k * math.factorial(j))
    return out


def _polynomial_second_moment(coefficients: dict, moments: dict, n_inputs: int) -> np.ndarray:
    """``E[A A^T]`` for ``A = sum_j mono_j(f) @ coefficients[j]`` given moments ``{n: (M_n,)}``."""
    total = 0.0
    for i, ai in coefficients.items():
        for j, aj in coefficients.items():
            G = np.asarray(moments[i + j])[union_ranks(n_inputs, i, j)]
            total = total + ai.T @ G @ aj
    return total


class FieldEstimate(NamedTuple):
    """Moment-matching estimate of the field likelihood.

    Attributes:
        theta: ``(p,)`` ``-S^-1 Abar``.
        model_covariance: ``(p, p)`` ``(n S)^-1`` (exponential-family width).
        sandwich_covariance: ``(p, p)`` ``S^-1 V S^-1 / n`` (honest for heavy tails).
    """

    theta: np.ndarray
    model_covariance: np.ndarray
    sandwich_covariance: np.ndarray

    def covariance(self, width: str) -> np.ndarray:
        """The covariance of ``width`` ``"model"`` or ``"sandwich"``."""
        return self.sandwich_covariance if width == "sandwich" else self.model_covariance


@dataclass(frozen=True)
class FieldStatistics:
    """Sufficient statistics of the field-level likelihood (module docstring).

    Attributes:
        names: coupling names; order: n (4 or 6).
        n_networks: networks summed.
        mean: ``(p,)`` ``Abar`` = mean over networks of ``A(f_a)``.
        gp_covariance: ``(p, p)`` ``S = Cov_GP(A)`` (model-based curvature).
        data_covariance: ``(p, p)`` ``V = Cov(A)`` over networks (sandwich), by
            ``sandwich_method``.
        batch_means: ``(B, p)`` ``Abar`` per batch of the ensemble; batch_counts ``(B,)``.
        coefficients: ``{j: (M_j, p)}``: ``A(f) = sum_j monomials_j(f) @ coefficients[j]``
            (``monomials_0 = 1``, ``M_0 = 1``).
        third_cumulant: ``(p, p, p)`` GP third cumulant of A (next term of log Z).
        eigvals, eigvecs: kept spectrum of K (``(r,)``, ``(P, r)``): the conditioning.
        rtol: relative cutoff on K's eigenvalues; width: ``"sandwich"`` or ``"model"``.
        prior_scale: ``(p,)`` default prior standard deviations.
    """

    names: tuple
    order: int
    n_networks: int
    mean: np.ndarray
    gp_covariance: np.ndarray
    data_covariance: np.ndarray
    batch_means: np.ndarray = field(repr=False)
    batch_counts: np.ndarray = field(repr=False)
    coefficients: dict = field(repr=False)
    third_cumulant: np.ndarray = field(repr=False)
    eigvals: np.ndarray = field(repr=False)
    eigvecs: np.ndarray = field(repr=False)
    prior_scale: np.ndarray
    sandwich_method: str
    rtol: float
    width: str = "sandwich"

    @property
    def rank(self) -> int:
        """Components of ``f_X`` conditioned on."""
        return len(self.eigvals)

    @property
    def n_params(self) -> int:
        return len(self.names)

    @property
    def likelihood_covariance(self) -> np.ndarray:
        """Per-network covariance of A used by the likelihood (``V`` or ``S``)."""
        return self.data_covariance if self.width == "sandwich" else self.gp_covariance

    def with_width(self, width: str) -> FieldStatistics:
        """The same statistics with likelihood width ``"sandwich"`` or ``"model"``."""
        return replace(self, width=check_choice(width, WIDTHS, "width"))

    def estimate(self) -> FieldEstimate:
        """Moment-matching estimate ``-S^-1 Abar`` with model and sandwich covariances."""
        S_inv = np.linalg.inv(self.gp_covariance)
        n = self.n_networks
        return FieldEstimate(
            -S_inv @ self.mean, S_inv / n, S_inv @ self.data_covariance @ S_inv / n
        )

    def estimate_from_cumulant(self, k) -> np.ndarray:
        """The moment-matching estimate for noise-free data with connected correlator ``k``.

        For a distribution whose 2-pt function is exactly K (single-hidden-layer nets), the
        normal-ordered statistics have mean ``coefficients[order]^T k``; e.g. pass the exact
        oracle ``kappa_4`` to get the value this likelihood converges to. ``k``: ``(M,)``.
        """
        mean = self.coefficients[self.order].T @ np.asarray(k, dtype=np.float64)
        return -np.linalg.solve(self.gp_covariance, mean)

    def width_ratio(self) -> np.ndarray:
        """Sandwich over model-based posterior standard deviation, per coupling."""
        est = self.estimate()
        return np.sqrt(np.diag(est.sandwich_covariance) / np.diag(est.model_covariance))

    def log_normaliser_shift(self, theta=None) -> np.ndarray:
        """Shift of the estimate from the cubic term of log Z, in posterior sds, per coupling.

        ``log Z = theta S theta / 2 - kappa_3[theta, theta, theta] / 6 + ...``; keeping the
        cubic term moves the solution of the score equation by ``S^-1 kappa_3[theta, theta] / 2``.
        ``theta`` defaults to the estimate.
        """
        est = self.estimate()
        theta = est.theta if theta is None else np.asarray(theta, np.float64)
        shift = 0.5 * np.linalg.solve(
            self.gp_covariance, np.einsum("abc,b,c->a", self.third_cumulant, theta, theta)
        )
        return shift / np.sqrt(np.diag(est.covariance(self.width)))

    # ---------------------------------------------------------------- per network
    def statistic(self, f) -> np.ndarray:
        """``A(f_a)`` for outputs ``f (n, P)``: ``(n, p)``."""
        f = np.asarray(f, dtype=np.float64)
        mono = {0: np.ones((f.shape[0], 1)), **monomials(f, max(self.coefficients))}
        return sum(mono[j] @ c for j, c in self.coefficients.items())

    def gp_log_density(self, f) -> np.ndarray:
        """``log N(U_r^T f; 0, Lambda_r)`` per network (the conditioned components): ``(n,)``."""
        g = np.asarray(f, dtype=np.float64) @ self.eigvecs
        return -0.5 * np.sum(g**2 / self.eigvals + np.log(2 * np.pi * self.eigvals), axis=-1)

    # ---------------------------------------------------------------- log-likelihoods
    @float64
    def log_likelihood(self, theta):
        """Summed log-likelihood (up to a theta-free constant): ``theta (..., p) -> (...)``."""
        return self._quadratic(theta, jnp.asarray(self.mean), self.n_networks)

    def _quadratic(self, theta, Abar, count, width=None):
        theta = jnp.asarray(theta)
        S = jnp.asarray(self.gp_covariance)
        if (width or self.width) == "model":
            # exponential family: -n (theta . Abar + theta S theta / 2)
            return -count * (
                jnp.sum(theta * Abar, axis=-1)
                + 0.5 * jnp.einsum("...a,ab,...b->...", theta, S, theta)
            )
        r = Abar + theta @ S.T
        V_inv = jnp.asarray(np.linalg.inv(self.data_covariance))
        return -0.5 * count * jnp.einsum("...a,ab,...b->...", r, V_inv, r)

    @float64
    def pointwise_batches(self, theta):
        """EFT log-density of each batch of the ensemble: ``theta (..., p) -> (..., B)``.

        ``-n_b (theta . Abar_b + theta S theta / 2)``, the exponential-family density of the
        batch's outputs without its GP part ``sum_a log N(f_a; 0, K)`` (the same for every
        coupling and every form conditioned on the same components), whatever ``width`` the
        posterior uses: a density of the outputs, so forms with different statistics compare
        by PSIS-LOO. Leave-one-batch-out uses every network; a subsample of single networks
        cannot resolve the O(1/N) differences between forms.
        """
        theta = jnp.asarray(theta)[..., None, :]
        Abar, counts = jnp.asarray(self.batch_means), jnp.asarray(self.batch_counts)
        return self._quadratic(theta, Abar, counts, width="model")

    @float64
    def pointwise_networks(self, theta, f):
        """Per-network log-likelihood ``(..., n)`` of outputs ``f (n, P)`` (e.g. a subsample).

        ``log N_GP(f_a) - theta . A(f_a) - theta S theta / 2``: the EFT density with the
        second-order normaliser (GP part on the conditioned components).
        """
        A = jnp.asarray(self.statistic(f))
        theta = jnp.asarray(theta)[..., None, :]
        return self._quadratic(theta, A, 1.0, width="model") + jnp.asarray(self.gp_log_density(f))


def field_rtol(order: int) -> float:
    """Default kernel-eigenvalue cutoff of the field likelihood: ``1e-12^(1/order)``.

    The exact sandwich needs ``2 order``-th moments of the conditioned components; a
    component whose eigenvalue is a fraction rho of the largest enters them at relative size
    ``rho^order``, which must stay far above float64 rounding: ``rho^order >= 1e-12``.
    """
    return 1e-12 ** (1.0 / order)


class _FieldTensors(NamedTuple):
    """What the field statistic A needs (see :func:`_field_tensors`)."""

    coefficients: dict  # {j: (M_j, p)}: A(f) = sum_j monomials_j(f) @ coefficients[j]
    gp_covariance: np.ndarray  # (p, p) S = Cov_GP(A)
    third_cumulant: np.ndarray  # (p, p, p)
    eigvals: np.ndarray  # (r,) kernel eigenvalues conditioned on
    eigvecs: np.ndarray  # (P, r)
    design: np.ndarray  # (M, p) the form's first-order design matrix
    reliable: bool  # False when components below rtol had to be added


def _field_tensors(arch, X, form, cutoff, rtol) -> _FieldTensors:
    """Coefficients, S and kappa_3 of the statistic A.

    Conditions on the kernel eigenvectors above ``rtol``; when these cannot identify the
    form's couplings (``-S^-1 E_theta[A] = theta`` fails), adds components one at a time up to
    those above :data:`_MIN_FIELD_RTOL`.
    """
    P = X.shape[0]
    n = form.order
    K = kernel(arch, X)
    evals_all, evecs_all = np.linalg.eigh(K)
    order_ = np.argsort(evals_all)[::-1]
    evals_all, evecs_all = evals_all[order_], evecs_all[:, order_]
    rank = max(1, int(np.sum(evals_all > rtol * evals_all.max())))
    rank_max = max(rank, int(np.sum(evals_all > _MIN_FIELD_RTOL * evals_all.max())))
    rule = vertex_rule(arch, X, cutoff)
    y, w = rule.nodes, rule.weights[:, 0]
    Kx = np.asarray(interaction_matrix(arch, jnp.asarray(X), jnp.asarray(y)))  # (P, Q)
    wB = w[:, None] * np.asarray(form.basis(y), dtype=np.float64)  # (Q, p)
    D = form.design_matrix(arch, X, cutoff)
    for r in range(rank, rank_max + 1):
        lam, U = evals_all[:r], evecs_all[:, :r]
        b = (U.T @ Kx) / lam[:, None]  # (r, Q): m(y) = b(y) . (U^T f)
        a = U @ b  # (P, Q): m(y) = a(y) . f
        v = np.einsum("rq,r,rq->q", b, lam, b)
        Kp = b.T @ (lam[:, None] * b)  # projected propagator (Q, Q)
        S = math.factorial(n) * wB.T @ (Kp**n) @ wB
        mono = monomials(a.T, n)
        coeffs = {}
        for j, c in hermite_coefficients(n).items():
            weights = wB * (c * v ** ((n - j) // 2))[:, None]
            mono_j = mono[j] * multiplicities(P, j) if j else np.ones((len(w), 1))
            coeffs[j] = mono_j.T @ weights  # (M_j, p); M_0 = 1
        # E_theta[A] = -S theta must reproduce kappa_n = D theta: coeffs[n]^T D = -S.
        if np.linalg.cond(S) < 1e12:
            identity = -np.linalg.solve(S, coeffs[n].T @ D)
            if np.max(np.abs(identity - np.eye(form.n_params))) < _IDENTITY_TOL:
                break
    else:
        raise ValueError(
            f"the field-level statistics cannot identify the couplings {form.names} at these "
            "inputs (too few well-conditioned kernel components); use the correlator likelihood"
        )
    P2 = Kp ** (n // 2)
    c3 = math.factorial(n) ** 3 / math.factorial(n // 2) ** 3
    kappa3 = c3 * np.stack(
        [wB.T @ ((P2 * wB[:, [b]].T) @ P2 * P2) @ wB for b in range(form.n_params)], axis=1
    )
    # the exact sandwich is numerically reliable on the components above field_rtol(n) only
    reliable = r <= int(np.sum(evals_all > field_rtol(n) * evals_all.max()))
    return _FieldTensors(coeffs, S, kappa3, lam, U, D, reliable)


@float64
def field_statistics(
    stats,
    form: CouplingForm | None = None,
    *,
    cutoff=None,
    rtol: float | None = None,
    sandwich: str = "auto",
    width: str = "sandwich",
) -> FieldStatistics:
    """Field-level likelihood statistics from an ensemble's streamed moment sums.

    The field likelihood needs the networks' outputs (their moment sums up to the form's
    order); it always uses the output statistics, whatever estimator measured the correlators.

    Args:
        stats: :class:`~nnqft_ppl.ensembles.correlators.CorrelatorStats` with
            ``max_order >= form.order`` (it knows the architecture and inputs).
        form: a local coupling form (default ``Constant()``; order 4 or 6).
        cutoff: box cutoff L of the vertex integrals, or None (all space; Gauss-net only).
        rtol: condition on the eigenvectors of K above ``rtol * max`` (default
            :func:`field_rtol`: 1e-3 for quartic forms); components are added (down to 1e-9)
            only when needed to identify the couplings.
        sandwich: how ``V = Cov(A)`` is obtained: ``"exact"`` (exact moments up to order 2n of
            single-hidden-layer nets, the honest one for heavy tails), ``"batch"`` (spread of
            the ensemble's batch means of A) or ``"auto"`` (exact where available and
            numerically reliable, i.e. no component below ``rtol`` was added; else batch).
            Batch spreads under-estimate V for heavy-tailed ensembles (unsampled tails).
        width: ``"sandwich"`` (``Abar ~ N(-S theta, V / n)``, honest for heavy tails) or
            ``"model"`` (exponential family, width ``(n S)^-1/2``).

    Example:
        >>> fs = field_statistics(stats, form=Constant(), cutoff=2.0)
        >>> fs.estimate().theta, fs.width_ratio(), fs.log_normaliser_shift()
    """
    form = _check_form(Constant() if form is None else form)
    if not form.local:
        raise ValueError(
            f"the field-level likelihood needs a local coupling form (basis functions of y); "
            f"{type(form).__name__} is not local: use likelihood='correlator'"
        )
    check_choice(sandwich, SANDWICH_METHODS, "sandwich")
    check_choice(width, WIDTHS, "width")
    arch, X = stats.arch, stats.X
    n = form.order
    if stats.max_order < n:
        raise ValueError(
            f"the field likelihood of an order-{n} form needs moment sums up to order {n}; "
            f"the statistics have max_order={stats.max_order}"
        )
    rtol = field_rtol(n) if rtol is None else rtol
    t = _field_tensors(arch, X, form, cutoff, rtol)
    coeffs = t.coefficients
    if "outputs" not in stats.sums.sums:
        raise ValueError(
            "the field-level likelihood needs the outputs' moment sums: measure the ensemble with "
            "estimator='outputs' or 'both' (this one holds the kernel estimator only)"
        )
    counts = stats.sums.counts
    sums = {0: counts[:, None], **stats.sums.sums["outputs"]}
    batch_sums = sum(sums[j] @ c for j, c in coeffs.items())
    good = counts > 0
    batch_means = batch_sums[good] / counts[good, None]
    n_net = int(counts.sum())
    mean = batch_sums.sum(axis=0) / n_net
    exact_ok = arch.depth == 1 and n == 4
    method = ("exact" if exact_ok and t.reliable else "batch") if sandwich == "auto" else sandwich
    if method == "exact":
        if not exact_ok:
            raise ValueError("sandwich='exact' needs a single-hidden-layer net and a quartic form")
        moments = {0: np.ones(1), **exact_moments(arch, X, stats.width, 2 * n)}
        second = _polynomial_second_moment(coeffs, moments, X.shape[0])
        first = sum(np.asarray(moments[j]) @ c for j, c in coeffs.items())
        V = second - np.outer(first, first)
    else:
        if len(batch_means) < 2:
            raise ValueError("sandwich='batch' needs at least two non-empty batches")
        dev = batch_means - mean
        V = (counts[good, None] * dev).T @ dev / (len(batch_means) - 1)
    V = 0.5 * (V + V.T)
    if not np.all(np.linalg.eigvalsh(V) > 0):
        raise ValueError(
            f"the {method} covariance of the field statistics is not positive definite "
            "(rounding in high moments of nearly degenerate components): raise rtol or use "
            "sandwich='batch'"
        )
    scale = default_prior_scale(arch, X, t.design, n)
    return FieldStatistics(
        tuple(form.names), n, n_net, mean, t.gp_covariance, V, batch_means,
        counts[good].astype(np.float64), coeffs, t.third_cumulant, t.eigvals, t.eigvecs, scale,
        method, rtol, width,
    )  # fmt: skip


# --------------------------------------------------------------------------- building blocks
def sample_couplings(names, prior=None, scales=None, prefix: str = "", center=None, spread=None):
    """Sample one NumPyro site per coupling and return them stacked: ``(p,)`` (jax).

    Args:
        names: coupling names (``form.names`` / ``data.names``).
        prior: None (``Normal(0, scale)`` per coupling), one distribution for all, or a dict
            ``{name: distribution}`` (missing names get the default).
        scales: default prior standard deviations ``(p,)`` (``data.prior_scale``).
        prefix: prepended to the site names (several architectures in one model).
        center, spread: optional ``(p,)``: sample ``z = (theta - center) / spread`` in a site
            ``<name>_std`` (the same prior, affinely transformed) and record ``theta`` as a
            deterministic site ``<name>``. Samplers and SVI then work on O(1) numbers even
            when the couplings are 1e-4 +- 1e-7 (the inference runners pass the
            least-squares estimate and its standard error).

    Example:
        >>> theta = sample_couplings(["lambda"], scales=[0.1])   # inside a NumPyro model
    """
    import numpyro
    import numpyro.distributions as dist

    names = list(names)
    scales = np.ones(len(names)) if scales is None else np.broadcast_to(scales, (len(names),))
    if prior is not None and not isinstance(prior, dict | dist.Distribution):
        raise ValueError(
            f"prior must be a numpyro distribution or a dict name -> distribution, got {prior!r}"
        )
    if isinstance(prior, dict):
        unknown = set(prior) - set(names)
        if unknown:
            raise ValueError(f"prior names {sorted(unknown)} are not couplings of {names}")
    values = []
    for name, scale in zip(names, scales, strict=True):
        if isinstance(prior, dict):
            d = prior.get(name, dist.Normal(0.0, float(scale)))
        elif prior is not None:
            d = prior
        else:
            d = dist.Normal(0.0, float(scale))
        if center is None:
            values.append(numpyro.sample(prefix + name, d))
        else:
            c, w = float(center[len(values)]), float(spread[len(values)])
            z = numpyro.sample(
                prefix + name + "_std",
                dist.TransformedDistribution(d, dist.transforms.AffineTransform(-c / w, 1 / w)),
            )
            values.append(numpyro.deterministic(prefix + name, c + w * z))
    return jnp.stack([jnp.asarray(v) for v in values], axis=-1)


def correlator_factor(data: CorrelatorData, theta, name: str | None = None):
    """Observe the measured correlators: ``W k ~ Normal(W D theta, 1)`` over ``rank`` components.

    ``theta``: ``(p,)`` couplings. The site is named ``name`` (default ``"kappa_<order>"``) and
    has one log-likelihood term per kept covariance eigenvector.
    """
    import numpyro
    import numpyro.distributions as dist

    name = name or f"kappa_{data.order}"
    loc = jnp.asarray(data.white_design) @ theta
    with numpyro.plate(f"{name}_component", data.rank):
        return numpyro.sample(name, dist.Normal(loc, 1.0), obs=jnp.asarray(data.white_observed))


def field_factor(stats: FieldStatistics, theta, name: str = "field"):
    """Observe the field statistics: ``Abar ~ N(-S theta, Cov / n_networks)``.

    Equal, up to a theta-free constant, to the summed EFT log-likelihood
    ``-n (theta . Abar + theta S theta / 2)`` when ``stats.width == "model"`` (``Cov = S``); the
    sandwich width uses ``Cov = V``. Cost independent of the number of networks.
    """
    import numpyro
    import numpyro.distributions as dist

    cov = stats.likelihood_covariance / stats.n_networks
    loc = -(jnp.asarray(stats.gp_covariance) @ theta)
    return numpyro.sample(
        name,
        dist.MultivariateNormal(loc, scale_tril=jnp.asarray(np.linalg.cholesky(cov))),
        obs=jnp.asarray(stats.mean),
    )


def correlator_model(data: CorrelatorData, prior=None, center=None, spread=None):
    """Couplings with priors, observed through the correlator likelihood.

    ``center``, ``spread``: optional standardisation (:func:`sample_couplings`).
    """
    theta = sample_couplings(data.names, prior, data.prior_scale, "", center, spread)
    correlator_factor(data, theta)


def field_model(stats: FieldStatistics, prior=None, center=None, spread=None):
    """Couplings with priors, observed through the field-level likelihood.

    ``center``, ``spread``: optional standardisation (:func:`sample_couplings`).
    """
    theta = sample_couplings(stats.names, prior, stats.prior_scale, "", center, spread)
    field_factor(stats, theta)


def width_power_law_model(datasets: dict, reference_width: int | None = None, prior=None):
    """One quartic coupling per width, ``lambda_N = c (N / N_ref)^-a``; infers ``c`` and ``a``.

    Args:
        datasets: ``{width: CorrelatorData | FieldStatistics}`` of one-coupling forms.
        reference_width: N_ref (default the geometric mean of the widths, which decorrelates
            c and a).
        prior: optional ``{"c": dist, "a": dist}``; defaults ``c ~ Normal(0, scale at N_ref)``,
            ``a ~ Normal(1, 1)`` (centred on the perturbative 1/N, wide enough to reject it).

    Sites: ``c``, ``a``, deterministic ``lambda`` over widths, one observation per width.
    """
    import numpyro
    import numpyro.distributions as dist

    widths = sorted(datasets)
    for N in widths:
        if datasets[N].n_params != 1:
            raise ValueError("width_power_law_model needs one-coupling forms at every width")
    N_ref = float(reference_width or np.exp(np.mean(np.log(widths))))
    scale = float(np.exp(np.mean([np.log(datasets[N].prior_scale[0]) for N in widths])))
    prior = prior or {}
    c = numpyro.sample("c", prior.get("c", dist.Normal(0.0, scale)))
    a = numpyro.sample("a", prior.get("a", dist.Normal(1.0, 1.0)))
    lam = c * (jnp.asarray(widths, dtype=jnp.float64) / N_ref) ** (-a)
    numpyro.deterministic("lambda", lam)
    for i, N in enumerate(widths):
        data = datasets[N]
        if isinstance(data, FieldStatistics):
            field_factor(data, lam[i : i + 1], name=f"field_N{N}")
        else:
            correlator_factor(data, lam[i : i + 1], name=f"kappa_{data.order}_N{N}")


# --------------------------------------------------------------------------- closed form
class GaussianPosterior(NamedTuple):
    """The exact posterior of a likelihood that is linear-Gaussian in the couplings, under
    independent ``Normal(0, prior_scale)`` priors.

    Attributes:
        mean: ``(p,)`` posterior mean.
        covariance: ``(p, p)`` posterior covariance.
    """

    mean: np.ndarray
    covariance: np.ndarray

    def sample(self, rng: np.random.Generator, shape: tuple) -> np.ndarray:
        """Draws ``(*shape, p)``."""
        return self.from_normals(rng.standard_normal((*shape, len(self.mean))))

    def from_normals(self, normals: np.ndarray) -> np.ndarray:
        """The draws ``(..., p)`` that standard normals ``(..., p)`` map to (Cholesky root)."""
        return self.mean + normals @ np.linalg.cholesky(self.covariance).T

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))


def gaussian_posterior(likelihood, prior_scale=None, *, leave_out: int | None = None):
    """Closed-form posterior of :class:`CorrelatorData` or :class:`FieldStatistics`.

    Both likelihoods are Gaussian in the couplings theta with a linear mean: the correlator one
    ``W k ~ N(W D theta, 1)``, the field one ``Abar ~ N(-S theta, C / n)`` (``C = V`` or ``S``,
    by its ``width``). With priors ``theta_a ~ Normal(0, s_a)`` (the default of the models)
    the posterior is Gaussian with precision ``F + diag(1 / s^2)`` and mean
    ``precision^-1 b``, where ``F`` and ``b`` are the likelihood's information and score.

    Args:
        likelihood: the likelihood data.
        prior_scale: ``(p,)`` prior sds (default: the likelihood's ``prior_scale``).
        leave_out: field likelihood only: the posterior without batch ``leave_out`` of the
            ensemble (exact leave-one-batch-out refits, cheap: no sampling).

    Example:
        >>> post = gaussian_posterior(correlator_data(stats, cutoff=2.0))
        >>> post.mean, post.sd
    """
    s = np.asarray(likelihood.prior_scale if prior_scale is None else prior_scale, np.float64)
    if isinstance(likelihood, CorrelatorData):
        if leave_out is not None:
            raise ValueError("leave_out applies to the field likelihood's batches")
        A, z = likelihood.white_design, likelihood.white_observed
        information, score = A.T @ A, A.T @ z
    elif isinstance(likelihood, FieldStatistics):
        n, Abar = likelihood.n_networks, likelihood.mean
        if leave_out is not None:
            n_b = likelihood.batch_counts[leave_out]
            Abar = (n * Abar - n_b * likelihood.batch_means[leave_out]) / (n - n_b)
            n = n - n_b
        S = likelihood.gp_covariance
        C_inv_S = np.linalg.solve(likelihood.likelihood_covariance, S)
        information, score = n * S.T @ C_inv_S, -n * C_inv_S.T @ Abar
    else:
        raise ValueError(
            f"a closed-form posterior needs CorrelatorData or FieldStatistics, got "
            f"{type(likelihood).__name__}"
        )
    covariance = np.linalg.inv(information + np.diag(1 / s**2))
    covariance = 0.5 * (covariance + covariance.T)
    return GaussianPosterior(covariance @ score, covariance)
