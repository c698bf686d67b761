"""Coupling forms, measured couplings, least-squares fits, symmetries and allowed forms."""

import numpy as np
import pytest
from scipy import stats

import nnqft_ppl as nq
from nnqft_ppl.core.linalg import generalized_least_squares
from nnqft_ppl.core.multisets import gp_moments
from nnqft_ppl.oracle.exact import exact_covariance, exact_cumulant
from nnqft_ppl.theory import couplings as C
from nnqft_ppl.theory import symmetries
from nnqft_ppl.theory.vertex import vertex_integral

PAPER_X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])
RELU_X = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])


def test_names_and_orders():
    assert C.Constant().names == ["lambda"]
    assert C.RadialPolynomial(powers=(0, 2)).names == ["lambda_0", "lambda_2"]
    assert C.NonLocal().names == ["lambda_nl"]
    assert C.Sextic().names == ["kappa"] and C.Sextic().order == 6
    assert C.Polynomial(degree=2).names == ["lambda_0", "lambda_y0", "lambda_y0y0"]
    assert C.Polynomial(degree=2, d_in=2, even=True).names == [
        "lambda_0",
        "lambda_y0y0",
        "lambda_y0y1",
        "lambda_y1y1",
    ]
    both = C.Constant() + C.NonLocal()
    assert both.names == ["lambda", "lambda_nl"] and both.order == 4
    with pytest.raises(ValueError, match="orders"):
        C.Constant() + C.Sextic()
    with pytest.raises(ValueError, match="distinct"):
        C.Constant() + C.Constant()
    with pytest.raises(ValueError, match="powers"):
        C.RadialPolynomial(powers=(2, 2))


def test_design_matrices_follow_the_feynman_rules():
    arch, L = nq.ErfNet(), 1.5
    X = np.array([-0.4, 0.1, 0.5])
    I4 = vertex_integral(arch, X, 4, L).values
    D = C.Constant().design_matrix(arch, X, L)
    assert D.shape == (15, 1) and D.dtype == np.float64
    np.testing.assert_allclose(D[:, 0], -24 * I4, rtol=1e-13)
    np.testing.assert_allclose(C.RadialPolynomial((0,)).design_matrix(arch, X, L), D, rtol=1e-13)
    I2 = vertex_integral(arch, X, 4, L, basis=lambda y: (y**2).sum(1)).values
    Dr = C.RadialPolynomial((0, 2)).design_matrix(arch, X, L)
    np.testing.assert_allclose(Dr[:, 1], -24 * I2, rtol=1e-13)
    Dp = C.Polynomial(degree=2).design_matrix(arch, X, L)
    np.testing.assert_allclose(Dp[:, [0, 2]], Dr, rtol=1e-13)
    D6 = C.Sextic().design_matrix(arch, X, L)
    np.testing.assert_allclose(D6[:, 0], -720 * vertex_integral(arch, X, 6, L).values, rtol=1e-13)
    Dnl = C.NonLocal().design_matrix(arch, X, L)
    k = nq.eft_cumulants(arch, X, lambda_nl=0.3, cutoff=L, max_order=4)[4].values
    np.testing.assert_allclose(Dnl[:, 0] * 0.3, k, rtol=1e-12)
    Dsum = (C.Constant() + C.NonLocal()).design_matrix(arch, X, L)
    np.testing.assert_allclose(Dsum, np.concatenate([D, Dnl], axis=1))
    # the contract of issue 4: design @ theta is the first-order prediction
    theta = np.array([-0.02, 0.01])
    pred = nq.eft_cumulants(
        arch, X, **(C.RadialPolynomial((0, 2))).couplings(theta), cutoff=L, max_order=4
    )[4].values
    np.testing.assert_allclose(Dr @ theta, pred, rtol=1e-12)


def test_gauss_net_lambda_times_width_is_constant():
    arch = nq.GaussNet()
    values = [
        nq.measured_coupling(arch, PAPER_X, exact_cumulant(arch, PAPER_X, N, 4)) * N
        for N in (3, 10, 100, 1000)
    ]
    for v in values[1:]:
        np.testing.assert_allclose(v.values, values[0].values, rtol=1e-10)
    assert np.all(values[0].values < 0)  # single-layer kappa_4 > 0 on these inputs: lambda < 0


def relative_spread(arch, X, L):
    lam = nq.measured_coupling(arch, X, exact_cumulant(arch, X, 10, 4), L)
    return float(lam.std() / abs(lam.mean()))


def test_spread_of_lambda_across_tuples():
    """ReLU (sb0 = 0, x > 0): f(x) = x g exactly and I_4 ~ prod x, so lambda_m is one number.
    Gauss and Erf: lambda_m(T) = lambda(0) + O(x^2) for inputs near 0, so halving the inputs
    quarters the spread."""
    assert relative_spread(nq.ReLUNet(), RELU_X, 1.0) < 1e-12
    for arch, L in ((nq.GaussNet(), None), (nq.ErfNet(), 1.0)):
        ratio = relative_spread(arch, PAPER_X, L) / relative_spread(arch, PAPER_X / 2, L)
        assert 3.5 < ratio < 4.5


def test_measured_coupling_errors_and_validation():
    arch, L = nq.ReLUNet(), 1.0
    k4 = exact_cumulant(arch, RELU_X, 20, 4)
    cov = exact_covariance(arch, RELU_X, 20, 4) / 1e4
    lam = nq.measured_coupling(arch, RELU_X, k4, L, covariance=cov)
    I4 = vertex_integral(arch, RELU_X, 4, L).values
    np.testing.assert_allclose(lam.stderr.values, np.sqrt(np.diag(cov.values)) / (24 * I4))
    many = nq.measured_coupling(arch, RELU_X, k4, [1.0, 2.0])
    assert many.dims == ("tuple", "cutoff")
    np.testing.assert_allclose(many.sel(cutoff=2.0) / many.sel(cutoff=1.0), 2.0**-5, rtol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        nq.measured_coupling(arch, RELU_X, k4.values[:-1], L)
    # mixed signs: no vertex couples x < 0 and x > 0 for sb0 = 0: lambda_m undefined (NaN)
    Xm = np.array([-0.5, 0.5])
    lam = nq.measured_coupling(arch, Xm, exact_cumulant(arch, Xm, 20, 4), L)
    assert np.isnan(lam.sel(tuple="0,0,1,1")) and np.isfinite(lam.sel(tuple="0,0,0,0"))


def test_gls_recovers_parameters_with_calibrated_chi2():
    """Synthetic data k = D theta + noise (known covariance): pulls and chi^2 calibrated."""
    rng = np.random.default_rng(3)
    arch, L = nq.ErfNet(), 2.0
    X = np.array([-1.0, -0.3, 0.4, 1.0])
    form = C.RadialPolynomial((0, 2))
    D = form.design_matrix(arch, X, L)
    theta = np.array([-0.03, 0.02])
    A = rng.normal(size=(35, 35))
    cov = (A @ A.T) * 1e-6 * np.abs(D[:, 0]).mean() ** 2 / 35
    noise = rng.multivariate_normal(np.zeros(35), cov, size=400)
    chi2, pulls = [], []
    for e in noise:
        fit = generalized_least_squares(D, D @ theta + e, cov)
        chi2.append(fit.chi_square.value)
        pulls.append((fit.theta - theta) / fit.stderr)
    assert fit.rank == 35
    assert stats.kstest(chi2, stats.chi2(33).cdf).pvalue > 1e-3
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(0)) < 5 / np.sqrt(400))
    assert np.all(np.abs(pulls.std(0) - 1) < 5 / np.sqrt(2 * 400))
    data = D @ theta + noise[0]
    fit = nq.fit_coupling(form, arch, X, data, cov, L)
    # the GLS solution and its chi-square written out: theta = (D' C^-1 D)^-1 D' C^-1 k
    Ci_D = np.linalg.solve(cov, D)
    theta_gls = np.linalg.solve(D.T @ Ci_D, Ci_D.T @ data)
    np.testing.assert_allclose(fit.theta, theta_gls, rtol=1e-6)
    np.testing.assert_allclose(fit.covariance, np.linalg.inv(D.T @ Ci_D), rtol=1e-6)
    r = data - D @ theta_gls
    assert fit.dof == 33 and fit.chi2 == pytest.approx(r @ np.linalg.solve(cov, r), rel=1e-6)
    assert fit.p_value == pytest.approx(stats.chi2.sf(fit.chi2, 33), rel=1e-9)
    assert list(fit.parameters.coupling.values) == ["lambda_0", "lambda_2"]


def test_singular_covariance_uses_pseudo_inverse_rank():
    arch = nq.ReLUNet()
    k4 = exact_cumulant(arch, RELU_X, 20, 4)
    cov = exact_covariance(arch, RELU_X, 20, 4) / 1e6  # f(x) = x g: rank one
    fit = nq.fit_coupling(C.Constant(), arch, RELU_X, k4, cov, 1.0)
    assert fit.rank == 1 and fit.dof == 0
    lam = nq.measured_coupling(arch, RELU_X, k4, 1.0)
    np.testing.assert_allclose(fit.theta[0], lam.values[0], rtol=1e-10)
    with pytest.raises(ValueError, match="not identified"):
        nq.fit_coupling(C.RadialPolynomial((0, 2)), arch, RELU_X, k4, None, 1.0)


def test_held_out_prediction_radial_vs_constant():
    """Noise-free (exact) kappa_4 with the per-tuple errors of 1e6 networks: fitted on X, judged
    on X sqrt(2)/2. Erf-net at inputs where lambda_m varies (|x| <= 1): the radial form the
    symmetry allows predicts better. At the paper's inputs no form is distinguishable."""

    def heldout_score(arch, X, N, L, form):
        Xh = X * np.sqrt(2) / 2
        var = np.diag(exact_covariance(arch, X, N, 4).values) / 1e6
        fit = nq.fit_coupling(form, arch, X, exact_cumulant(arch, X, N, 4), np.diag(var), L)
        pred = fit.predict(arch, Xh)
        var_h = np.diag(exact_covariance(arch, Xh, N, 4).values) / 1e6
        z = (exact_cumulant(arch, Xh, N, 4).values - pred.values) / np.sqrt(
            var_h + pred.stderr.values**2
        )
        return float(np.mean(z**2))

    wide = PAPER_X * 100
    constant = heldout_score(nq.ErfNet(), wide, 5, 2.0, C.Constant())
    radial = heldout_score(nq.ErfNet(), wide, 5, 2.0, C.RadialPolynomial((0, 2)))
    assert radial < 0.7 * constant and constant > 2
    for arch, L in ((nq.ErfNet(), 1.0), (nq.GaussNet(sb0=0.5), None)):
        for form in (C.Constant(), C.RadialPolynomial((0, 2))):
            assert heldout_score(arch, PAPER_X, 100, L, form) < 1


def test_gp_symmetries_and_allowed_forms():
    assert nq.gp_symmetries(nq.GaussNet(d_in=2)) == {"translation", "rotation", "parity"}
    assert nq.gp_symmetries(nq.GaussNet()) == {"translation", "parity"}
    assert nq.gp_symmetries(nq.ErfNet(d_in=3)) == {"rotation", "parity"}
    assert nq.gp_symmetries(nq.ReLUNet(d_in=2)) == {"rotation", "parity"}
    assert nq.gp_symmetries(nq.ReLUNet(sb0=1.0)) == {"parity"}
    assert nq.allowed_coupling_forms(nq.GaussNet(sb0=0.5)) == (C.Constant(),)
    for arch in (nq.ErfNet(), nq.ReLUNet(d_in=2)):
        assert nq.allowed_coupling_forms(arch) == (C.Constant(), C.RadialPolynomial((0, 2)))


def test_symmetry_detection_sees_broken_symmetries(monkeypatch):
    """A kernel with none of the symmetries allows general polynomials; parity only, even ones."""

    def skewed(arch, X, X2=None):
        X = np.atleast_2d(np.asarray(X, dtype=float))
        s = X @ np.arange(1, X.shape[1] + 1)
        return np.exp(-0.5 * ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)) * (
            1 + 0.1 * np.add.outer(s, s) ** 2 + 0.2 * np.add.outer(X[:, 0], X[:, 0])
        )

    monkeypatch.setattr(symmetries, "kernel", skewed)
    arch = nq.GaussNet(d_in=2)
    assert nq.gp_symmetries(arch) == set()
    assert nq.allowed_coupling_forms(arch)[-1] == C.Polynomial(degree=2, d_in=2)

    def parity_only(arch, X, X2=None):
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return np.exp(-0.5 * ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)) * (
            1 + 0.3 * np.outer(X[:, 0], X[:, 0])
        )

    monkeypatch.setattr(symmetries, "kernel", parity_only)
    assert nq.gp_symmetries(arch) == {"parity"}
    assert nq.allowed_coupling_forms(arch)[-1] == C.Polynomial(degree=2, d_in=2, even=True)


def ensemble_moments(arch, X, width, n_networks, seed=1, n_batches=100):
    """Batch means of the monomials of orders 2, 4, 6 over a sampled ensemble."""
    from nnqft_ppl.core.multisets import monomials
    from nnqft_ppl.ensembles.sampler import iter_output_chunks

    sums = {n: np.zeros((n_batches, len(nq.index_multisets(len(X), n)))) for n in (2, 4, 6)}
    for lo, f in iter_output_chunks(nq.Ensemble(arch, X, width, n_networks, seed=seed)):
        batch = (lo + np.arange(len(f))) * n_batches // n_networks
        mono = monomials(f, 6)
        for n in sums:
            np.add.at(sums[n], batch, mono[n])
    return {n: s * n_batches / n_networks for n, s in sums.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, X, width, cutoff",
    [
        (nq.ErfNet(), PAPER_X, 5, 1.0),
        (nq.GaussNet(sb0=0.5), PAPER_X, 100, None),
        (nq.ReLUNet(), RELU_X, 20, 1.0),
    ],
    ids=["erf-N5", "gauss-sb0.5-N100", "relu-N20"],
)
def test_six_point_prediction_from_the_four_point_coupling(arch, X, width, cutoff):
    """1e6 networks: lambda fitted on kappa_4 predicts G_6 (GP + sum_15 K kappa_4 + tree) within
    the batch-means errors, and much better than the GP alone where the GP is rejected (Erf
    N = 5, ReLU N = 20; at Gauss-net N = 100 the GP alone is within errors too). ReLU-net at
    N = 20 measures kappa_6 itself (~9 sigma), which the lambda-tree does not give (it is 3.4x
    too large: the scale-mixture kappa_6 needs a sextic coupling): there the Sextic form fitted
    on kappa_6 is added, which the test requires to close the gap."""
    from nnqft_ppl.core.multisets import cumulants_from_moments

    batches = ensemble_moments(arch, X, width, 10**6)
    G6 = batches[6].mean(0)
    G6_err = batches[6].std(0, ddof=1) / 10
    k_batches = cumulants_from_moments(batches, len(X), 6)
    k = cumulants_from_moments({n: b.mean(0) for n, b in batches.items()}, len(X), 6)
    k_err = {n: b.std(0, ddof=1) / 10 for n, b in k_batches.items()}
    lam = nq.fit_coupling(C.Constant(), arch, X, k[4], np.diag(k_err[4] ** 2), cutoff).theta[0]
    couplings = {"quartic": lam, "cutoff": cutoff}
    if arch.activation == "relu":
        tree = nq.eft_cumulants(arch, X, **couplings)[6].values
        sextic = nq.fit_coupling(C.Sextic(), arch, X, k[6] - tree, np.diag(k_err[6] ** 2), cutoff)
        couplings["sextic"] = sextic.theta[0]
    pred = nq.eft_correlators(arch, X, **couplings)[6].values
    gp = gp_moments(nq.kernel(arch, X), 6)[6]
    z = (G6 - pred) / G6_err
    z_gp = (G6 - gp) / G6_err
    assert np.abs(z).max() < 5
    if np.mean(z_gp**2) > 2:  # where 1e6 networks resolve the non-Gaussianity of G_6 at all
        assert np.mean(z**2) < 0.2 * np.mean(z_gp**2)
