"""Likelihood building blocks: projection, field statistics from moment sums, log Z."""

import math
import warnings

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import gp_moments
from nnqft_ppl.inference import likelihoods as lk
from nnqft_ppl.theory import couplings as c


@pytest.fixture(scope="module")
def relu_stats():
    X = np.linspace(0.2, 1.2, 6)[:, None]
    return nq.correlators(
        nq.ReLUNet(), X, 20, 20_000, seed=5, max_order=4, n_batches=50, estimator="both"
    )


@pytest.fixture(scope="module")
def gauss_stats():
    X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        return nq.correlators(
            nq.GaussNet(sb0=0.5), X, 10, 20_000, seed=5, max_order=4, estimator="both"
        )


def test_hermite_coefficients():
    assert lk.hermite_coefficients(4) == {4: 1.0, 2: -6.0, 0: 3.0}
    assert lk.hermite_coefficients(6) == {6: 1.0, 4: -15.0, 2: 45.0, 0: -15.0}


def test_correlator_projection_matches_gls(gauss_stats):
    data = lk.correlator_data(gauss_stats, form=c.Constant())
    # close inputs: 126 entries, a handful of resolved directions (the rest is rounding)
    assert 3 <= data.rank <= 6
    theta, cov, *_ = data.least_squares()
    fit = c.fit_coupling(
        c.Constant(), gauss_stats.arch, gauss_stats.X, data.observed, data.covariance
    )
    np.testing.assert_allclose(theta, fit.theta, rtol=1e-8)
    np.testing.assert_allclose(cov, fit.covariance, rtol=1e-6)
    assert data.covariance_method.startswith("exact")  # one hidden layer: the honest covariance
    # whitened components are unit-variance under the projected covariance
    np.testing.assert_allclose(
        data.whitener @ data.covariance @ data.whitener.T, np.eye(data.rank), atol=1e-4
    )


def test_pointwise_log_likelihood_is_the_multivariate_normal_density():
    """The correlator log-likelihood summed over its whitened components equals scipy's
    ``multivariate_normal.logpdf(k; D theta, C)`` plus ``log det(C) / 2`` (the Jacobian of the
    whitening, independent of theta), at several theta; a noise scale off by a factor 2
    changes the theta-dependence and fails."""
    from scipy import stats

    rng = np.random.default_rng(2)
    M = 10
    D = rng.normal(size=(M, 2))
    A = rng.normal(size=(M, M))
    C = A @ A.T / M + 0.2 * np.eye(M)
    k = D @ [0.3, -0.2] + np.linalg.cholesky(C) @ rng.normal(size=M)
    data = lk.CorrelatorData.from_arrays(["a", "b"], k, D, C)
    thetas = np.array([[0.3, -0.2], [0.0, 0.0], [1.0, 0.5], [-2.0, 1.0]])
    ours = np.asarray(data.log_likelihood(thetas)).sum(axis=-1)
    ref = [stats.multivariate_normal.logpdf(k, D @ t, C) for t in thetas]
    np.testing.assert_allclose(ours - ref, 0.5 * np.linalg.slogdet(C)[1], rtol=1e-10)


def test_prior_scale_is_the_perturbative_edge(relu_stats):
    """Default prior sd: the coupling whose first-order kappa_4 is as large as the free G_4."""
    data = lk.correlator_data(relu_stats, form=c.Constant(), cutoff=2.0)
    gp = gp_moments(nq.kernel(relu_stats.arch, relu_stats.X), 4)[4]
    pred = data.predict(data.prior_scale)
    np.testing.assert_allclose(np.sqrt(np.mean(pred**2)), np.sqrt(np.mean(gp**2)), rtol=1e-12)
    theta, cov, *_ = data.least_squares()
    assert data.prior_scale[0] > 2 * abs(theta[0])  # the data lie inside the perturbative range


def test_field_statistic_from_moment_sums_equals_direct(relu_stats):
    """Abar from the streamed sums equals the mean of A(f_a) over the same networks."""
    fs = lk.field_statistics(relu_stats, form=c.Constant(), cutoff=2.0)
    f = nq.sample_outputs(relu_stats.arch, relu_stats.X, 20, relu_stats.n_networks, seed=5)
    np.testing.assert_allclose(fs.statistic(f).mean(axis=0), fs.mean, rtol=1e-9)
    batch = fs.statistic(f)[:400].mean(axis=0)
    np.testing.assert_allclose(fs.batch_means[0], batch, rtol=1e-9)


def test_field_reproduces_feynman_rules_and_oracle():
    """E_theta[A] = -S theta reproduces kappa_4 = D theta: on exact cumulants the field
    estimate is the first-order coupling (ReLU-net with sb0 = 0 is exactly first order)."""
    X = np.linspace(0.2, 1.2, 6)[:, None]
    arch = nq.ReLUNet()
    stats = nq.correlators(arch, X, 20, 2000, seed=1, max_order=4, n_batches=10, estimator="both")
    fs = lk.field_statistics(stats, form=c.Constant(), cutoff=2.0)
    k4 = nq.exact_cumulant(arch, X, 20, 4).values
    theta_field = -np.linalg.solve(fs.gp_covariance, fs.coefficients[4].T @ k4)
    fit = c.fit_coupling(c.Constant(), arch, X, k4, None, 2.0)
    np.testing.assert_allclose(theta_field, fit.theta, rtol=1e-8)


def test_log_normaliser_cumulants_against_quadrature(relu_stats):
    """S = Var_GP(A) and kappa_3 = E_GP[A^3] by Gauss-Hermite quadrature of the (rank-1)
    conditioned field, and E_GP[A] = 0 (normal ordering)."""
    fs = lk.field_statistics(relu_stats, form=c.Constant(), cutoff=2.0)
    assert fs.rank == 1
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    f = (np.sqrt(fs.eigvals[0]) * x)[:, None] * fs.eigvecs[:, 0][None, :]
    A = fs.statistic(f)[:, 0]
    assert abs(w @ A) < 1e-10 * np.sqrt(w @ A**2)
    np.testing.assert_allclose(w @ A**2, fs.gp_covariance[0, 0], rtol=1e-9)
    np.testing.assert_allclose(w @ A**3, fs.third_cumulant[0, 0, 0], rtol=1e-9)


def test_log_normaliser_expansion_zero_dimensions():
    """SPEC 4.2 check in zero dimensions: log Z(lam) = 24 K^4 lam^2 / 2 - 1728 K^6 lam^3 / 6 + ...
    for A = :x^4:, against quadrature of the (normalisable, lam > 0) density."""
    K, lam = 0.7, 2e-3
    x = np.linspace(-12, 12, 200_001) * math.sqrt(K)
    A = x**4 - 6 * K * x**2 + 3 * K**2
    gauss = np.exp(-(x**2) / (2 * K))
    log_z = np.log(np.trapezoid(gauss * np.exp(-lam * A), x) / np.trapezoid(gauss, x))
    second = 0.5 * 24 * K**4 * lam**2
    third = -1728 * K**6 * lam**3 / 6
    assert abs(log_z - second) < 1.5 * abs(third)
    assert abs(log_z - second - third) < 0.2 * abs(third)


def test_log_normaliser_error_small_against_width():
    """The truncation of log Z moves the estimate by much less than a posterior sd where the
    coupling is small against the precision (wide net, moderate ensemble)."""
    X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        stats = nq.correlators(
            nq.GaussNet(sb0=0.5), X, 1000, 50_000, seed=2, max_order=4, estimator="both"
        )
    fs = lk.field_statistics(stats, form=c.Constant())
    theta_exact = -np.linalg.solve(
        fs.gp_covariance, fs.coefficients[4].T @ nq.exact_cumulant(stats.arch, X, 1000, 4).values
    )
    assert np.all(np.abs(fs.log_normaliser_shift(theta_exact)) < 0.1)


def test_width_ratio_heavy_tails():
    """Gauss-net sb0 = 1 is heavy-tailed: the sandwich width far exceeds the model width."""
    X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        heavy = nq.correlators(
            nq.GaussNet(sb0=1.0), X, 10, 5000, seed=2, max_order=4, estimator="outputs"
        )
        light = nq.correlators(nq.ErfNet(), X, 10, 5000, seed=2, max_order=4, estimator="outputs")
    assert lk.field_statistics(heavy).width_ratio()[0] > 20
    assert lk.field_statistics(light, cutoff=2.0).width_ratio()[0] < 1.5


def test_pointwise_batches_sum_to_total(relu_stats):
    fs = lk.field_statistics(relu_stats, form=c.Constant(), cutoff=2.0, width="model")
    thetas = np.array([[-0.02], [-0.01], [0.0]])
    diff = np.asarray(fs.pointwise_batches(thetas)).sum(-1) - np.asarray(fs.log_likelihood(thetas))
    np.testing.assert_allclose(diff, diff[0], atol=1e-6 * np.abs(diff).max() + 1e-9)


def test_bad_inputs(relu_stats):
    with pytest.raises(ValueError, match="coupling form"):
        lk.correlator_data(relu_stats, form="constant", cutoff=2.0)
    with pytest.raises(ValueError, match="unknown covariance 'batch'"):
        lk.correlator_data(relu_stats, cutoff=2.0, covariance="batch")
    with pytest.raises(ValueError, match="local coupling form"):
        lk.field_statistics(relu_stats, form=c.NonLocal(), cutoff=2.0)
    with pytest.raises(ValueError, match="unknown sandwich 'jackknife'"):
        lk.field_statistics(relu_stats, cutoff=2.0, sandwich="jackknife")
    with pytest.raises(ValueError, match="max_order"):
        lk.field_statistics(relu_stats, form=c.Sextic(), cutoff=2.0)
    with pytest.raises(ValueError, match="design must have shape"):
        lk.CorrelatorData.from_arrays(["lambda"], np.ones(3), np.ones((3, 2)), np.eye(3))
    with pytest.raises(ValueError, match="prior names"):
        import numpyro

        with numpyro.handlers.seed(rng_seed=0):
            lk.sample_couplings(["lambda"], prior={"lam": None})
