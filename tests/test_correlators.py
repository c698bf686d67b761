"""Measured correlators against the GP kernel and the exact finite-width oracle.

Every agreement test has a power check (the same data reject kappa = 0 and kappa x 0.5 with
p < P_REJECT) and is two-sided (a chi-square too small for its dof fails as well), and the
errors themselves are checked: exact sampling covariances against the spread of the estimates
over many independent ensembles, and calibrated chi-squares over those ensembles.
"""

import functools
import warnings

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.core.linalg import chi_square, whitening
from nnqft_ppl.ensembles.estimators import tables
from tests.conftest import P_MIN

N_BIG = 1_000_000
#: A power check must reject the wrong value below this p-value.
P_REJECT = 1e-6


def assert_agrees(test, label=""):
    """Two-sided: a chi-square neither too large (p > P_MIN) nor too small (p < 1 - P_MIN, i.e.
    errors not grossly overstated)."""
    assert P_MIN < test.p_value < 1 - P_MIN, (label, test)


def assert_rejects(test, label=""):
    assert test.p_value < P_REJECT, (label, test)


def _relu2d_inputs():
    return np.random.default_rng(0).uniform(0.2, 1.2, size=(6, 2))


CASES = {
    "erf-N5": (nq.ErfNet(), "paper", 5),
    "relu-N20": (nq.ReLUNet(), "relu", 20),
    "relu-d2-N20": (nq.ReLUNet(d_in=2), "relu2d", 20),
    "gauss-sb0.5-N10": (nq.GaussNet(sb0=0.5), "paper", 10),
}


def _inputs(kind, paper_inputs, relu_inputs):
    return {"paper": paper_inputs, "relu": relu_inputs, "relu2d": _relu2d_inputs()}[kind]


@pytest.fixture(scope="module")
def ensembles():
    """One 1e6-network ensemble per case, measured up to the 6-pt function (~4 s each)."""
    paper = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])[:, None]
    relu = np.linspace(0.2, 1.2, 6)[:, None]
    out = {}
    for name, (arch, kind, width) in CASES.items():
        X = _inputs(kind, paper, relu)
        out[name] = nq.correlators(arch, X, width, N_BIG, seed=1, max_order=6)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_connected_four_point_function_matches_the_oracle(ensembles, case):
    """chi-square over all 126 entries with the exact sampling covariance (entries are
    strongly correlated: per-entry z-scores would overcount)."""
    stats = ensembles[case]
    exact = nq.exact_cumulant(stats.arch, stats.X, stats.width, 4)
    k4 = stats.cumulant(4)
    # with the exact covariance, and with the jackknife one (light tails: it can be trusted)
    for method in ("exact", "jackknife"):
        cov = stats.covariance(4, method=method)
        assert_agrees(chi_square(k4 - exact, cov), method)
        # power: the same data reject no connected 4-pt function and half of it
        assert_rejects(chi_square(k4, cov), method)
        assert_rejects(chi_square(k4 - 0.5 * exact, cov), method)


@pytest.mark.parametrize("case", list(CASES))
def test_connected_six_point_function_matches_the_oracle(ensembles, case):
    """Jackknife covariance (1000 batches). With the kernel estimator (the default) 1e6
    networks resolve kappa_6 in every case: measured p-values for kappa_6 = 0 and kappa_6 x 0.5
    are 0 to double precision except Gauss-net's 0.5x (1e-285)."""
    stats = ensembles[case]
    exact = nq.exact_cumulant(stats.arch, stats.X, stats.width, 6)
    k6, cov = stats.cumulant(6), stats.covariance(6)
    assert_agrees(chi_square(k6 - exact, cov))
    assert_rejects(chi_square(k6, cov), "kappa_6 = 0")
    assert_rejects(chi_square(k6 - 0.5 * exact, cov), "kappa_6 x 0.5")


@pytest.mark.parametrize("case", list(CASES))
def test_non_gaussianity_is_resolved(ensembles, case):
    """The oracle's kappa_4 is many standard errors from zero, so the tests above have power."""
    stats = ensembles[case]
    exact = nq.exact_cumulant(stats.arch, stats.X, stats.width, 4)
    assert chi_square(exact, stats.covariance(4, method="exact")).z > 5


@pytest.mark.parametrize("case", list(CASES))
def test_batch_errors_agree_with_exact_errors_for_light_tails(ensembles, case):
    """Jackknife variances from B = 1000 batches carry a relative error of about sqrt(2/B)."""
    ratio = np.median(ensembles[case].error_ratio().values)
    assert abs(ratio - 1) < 5 * np.sqrt(2 / 1000) / 2 + 0.02


# --------------------------------------------------------------------- non-default scales
SCALED = {
    # every scale != 1, so that a wrong power of a scale in the sampler, the kernel estimator
    # or the oracle cannot pass; N = 2: kappa_6 resolved by both estimators (measured
    # p(kappa_6 x 0.5) = 3e-15 for the output estimator, 0 for the kernel one)
    "erf-scaled-N2": (nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5), [[-0.8], [0.1], [0.9]], 2,
                      300_000, 6),
    # kappa_4 only: ReLU's kappa_6 batch errors at N = 3 understate the tails (chi2 ~ 1.7 dof)
    "relu-d2-scaled-N3": (nq.ReLUNet(d_in=2, sw0=1.2, sb0=0.5, sw1=0.7, sb1=0.4),
                          [[0.3, 0.2], [0.5, -0.4], [-0.2, 0.9]], 3, 200_000, 4),
}  # fmt: skip


@functools.cache
def _scaled(case):
    arch, X, width, n, max_order = SCALED[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        stats = nq.correlators(arch, np.array(X), width, n, seed=3, max_order=max_order,
                               n_batches=400, estimator="both")  # fmt: skip
    return stats, nq.exact_cumulants(arch, np.array(X), width, max_order)


@pytest.mark.parametrize("estimator", ["kernel", "outputs"])
@pytest.mark.parametrize("case", list(SCALED))
def test_both_estimators_match_the_oracle_at_non_default_scales(case, estimator):
    """The 2-pt function (sb1^2 + sw1^2 E[phi phi]), kappa_4 (exact and jackknife covariance)
    and kappa_6 (jackknife) of each estimator against the oracle, with power checks."""
    stats, exact = _scaled(case)
    k2, cov2 = stats.cumulant(2, estimator), stats.covariance(2, estimator=estimator)
    assert_agrees(chi_square(k2 - exact[2], cov2), "kappa_2")
    # a 2-pt function off by 5% is rejected (a wrong power of sw1 = 0.8 is off by 20-60%)
    assert_rejects(chi_square(k2 - 1.05 * exact[2], cov2), "kappa_2 x 1.05")
    k4 = stats.cumulant(4, estimator)
    for method in ("exact", "jackknife"):
        cov = stats.covariance(4, method=method, estimator=estimator)
        assert_agrees(chi_square(k4 - exact[4], cov), method)
        assert_rejects(chi_square(k4, cov), method)
        assert_rejects(chi_square(k4 - 0.5 * exact[4], cov), method)
    if stats.max_order >= 6:
        k6, cov6 = stats.cumulant(6, estimator), stats.covariance(6, estimator=estimator)
        assert_agrees(chi_square(k6 - exact[6], cov6), "kappa_6")
        assert_rejects(chi_square(k6, cov6), "kappa_6 = 0")
        assert_rejects(chi_square(k6 - 0.5 * exact[6], cov6), "kappa_6 x 0.5")


# --------------------------------------------------------------------- the errors themselves
CALIBRATION = (nq.ErfNet(sw0=1.3, sb0=0.6, sw1=0.8, sb1=0.5), np.array([[-1.0], [-0.3], [0.4]]),
               10, 400, 1000)  # arch, X, width, ensembles, networks each  # fmt: skip


@functools.cache
def _calibration_run():
    """400 independent ensembles of 1000 networks: the batches of one run (both estimators)."""
    arch, X, width, B, size = CALIBRATION
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        return nq.correlators(arch, X, width, B * size, seed=7, max_order=4, n_batches=B,
                              estimator="both")  # fmt: skip


def _per_ensemble_kappa4(stats, estimator):
    """kappa_4 of each batch alone: ``(n_batches, M)``, one estimate per independent ensemble."""
    shift = stats._shift() if estimator == "kernel" else None
    sums = {d: s for d, s in stats.sums.sums[estimator].items()}
    P = stats.n_inputs
    return tables(estimator, sums, stats.sums.counts, P, 4, shift).cumulants[4]


def test_exact_covariance_of_the_output_estimator_is_the_spread_over_ensembles():
    """The covariance over 400 independent ensembles of their output-estimator kappa_4 (15
    entries at three inputs) equals ``nq.exact_covariance / 1000`` entrywise, within the
    sampling error of a covariance estimated from 400 draws; a covariance half or twice as
    large is rejected on most of the diagonal."""
    arch, X, width, B, size = CALIBRATION
    k4 = _per_ensemble_kappa4(_calibration_run(), "outputs")
    spread = np.cov(k4, rowvar=False)
    exact = nq.exact_covariance(arch, X, width, 4).values / size
    d = np.sqrt(np.diag(exact))
    # sampling sd of a covariance entry from B draws ~ sqrt((C_ii C_jj + C_ij^2) / B)
    se = np.sqrt((np.outer(d, d) ** 2 + exact**2) / B)
    assert np.all(np.abs(spread - exact) < 4.5 * se), np.max(np.abs(spread - exact) / se)
    for factor in (2.0, 0.5):
        far = np.abs(np.diag(spread) - factor * np.diag(exact)) > 4 * np.diag(se)
        assert np.mean(far) > 0.5, factor


@pytest.mark.parametrize("estimator", ["outputs", "kernel"])
def test_exact_errors_are_calibrated_over_independent_ensembles(estimator):
    """Two-sided calibration of ``stats.covariance(4, method="exact")``: for each of the 400
    ensembles, the chi-square of its kappa_4 against the oracle with the run's exact
    covariance scaled to one ensemble (x n_networks / 1000) has mean = rank (15), within 5
    standard errors of the mean (measured from the 400 values: ~0.3). Errors 2x too large
    (mean ~7.5) or too small fail by 20+ standard errors; the z-scores of the diagonal entries
    have sd 1 within 5 / sqrt(2 * 400)."""
    arch, X, width, B, size = CALIBRATION
    stats = _calibration_run()
    exact = nq.exact_cumulant(arch, X, width, 4).values
    cov = stats.covariance(4, method="exact", estimator=estimator).values * stats.n_networks / size
    resid = _per_ensemble_kappa4(stats, estimator) - exact
    w = whitening(cov)
    chi2 = np.sum((resid @ w.whitener.T) ** 2, axis=1)
    t = (chi2.mean() - w.rank) / (chi2.std(ddof=1) / np.sqrt(B))
    assert w.rank == 15 and abs(t) < 5, (chi2.mean(), w.rank, t)
    z = resid / np.sqrt(np.diag(cov))
    assert np.all(np.abs(z.std(axis=0) - 1) < 5 / np.sqrt(2 * B)), z.std(axis=0)


@pytest.mark.parametrize("width", [2, 1000])
@pytest.mark.parametrize("arch", [nq.GaussNet(), nq.ErfNet(), nq.ReLUNet(sb0=0.5)])
def test_two_point_function_is_the_kernel_at_any_width(arch, width, paper_inputs):
    n = 200_000 if width == 2 else 20_000
    X = paper_inputs * 50  # spread the inputs so the kernel entries differ
    stats = nq.correlators(arch, X, width, n, seed=5, max_order=2, n_batches=200)
    K = nq.kernel(arch, X)[tuple(nq.index_multisets(6, 2).T)]
    z = (stats.moment(2).values - K) / stats.stderr(2, kind="moment").values
    assert np.abs(z).max() < 5


def test_heavy_tails_make_batch_errors_untrustworthy(paper_inputs):
    """The paper's Gauss-net (sb0 = 1) has log-normal hidden units: the 8-pt moments that set
    the error of kappa_4 are dominated by draws a 1e6 ensemble rarely contains. The library
    detects it by comparing jackknife and exact errors, and warns. With the batch errors the
    data would reject the true kappa_4 (measured p ~ 1e-14); with the exact ones they do not,
    and they do not resolve kappa_4 at all (kappa_4 = 0 is not rejected: measured p = 0.93):
    the honest conclusion at this size is "not resolved", and the test holds the library to
    saying no more."""
    with pytest.warns(nq.BatchErrorWarning, match="exact"):
        stats = nq.correlators(nq.GaussNet(), paper_inputs, 10, N_BIG, seed=1, max_order=4)
    assert np.median(stats.error_ratio().values) < 0.2
    exact = nq.exact_cumulant(stats.arch, paper_inputs, 10, 4)
    k4 = stats.cumulant(4)
    assert chi_square(k4 - exact, stats.covariance(4)).p_value < P_MIN
    honest = stats.covariance(4, method="exact")
    assert chi_square(k4 - exact, honest).p_value > P_MIN
    assert chi_square(k4, honest).p_value > 1e-3


def test_float32_forward_pass_does_not_bias_kappa4(paper_inputs):
    arch = nq.ErfNet()
    f32 = nq.correlators(arch, paper_inputs, 5, N_BIG, seed=2, max_order=4, dtype="float32")
    exact = nq.exact_cumulant(arch, paper_inputs, 5, 4)
    cov = f32.covariance(4, method="exact")
    assert_agrees(chi_square(f32.cumulant(4) - exact, cov))
    assert_rejects(chi_square(f32.cumulant(4), cov))  # power (measured chi2 8e5 on 5 dof)
    assert_rejects(chi_square(f32.cumulant(4) - 0.5 * exact, cov))


def test_deviation_from_the_gp_is_resolved_at_small_width(paper_inputs):
    stats = nq.correlators(nq.ErfNet(), paper_inputs, 2, N_BIG, seed=0, max_order=4)
    dev = stats.deviation(4)
    assert float(dev["m"]) > 3 * float(dev["background"])
    assert stats.gp_moment(4).dims == ("tuple",)


@pytest.mark.parametrize("suffix", [".zarr", ".nc"])
def test_save_and_load_round_trip(tmp_path, paper_inputs, suffix):
    stats = nq.correlators(nq.ErfNet(), paper_inputs, 5, 2000, seed=0, max_order=6, n_batches=20)
    path = stats.save(tmp_path / f"stats{suffix}")
    back = nq.CorrelatorStats.load(path)
    assert back.arch == stats.arch and back.width == 5 and back.n_networks == 2000
    np.testing.assert_array_equal(back.cumulant(6).values, stats.cumulant(6).values)
    np.testing.assert_array_equal(back.covariance(4).values, stats.covariance(4).values)


def test_bad_inputs_name_the_problem(paper_inputs, tmp_path):
    arch = nq.ErfNet()
    with pytest.raises(ValueError, match="width"):
        nq.correlators(arch, paper_inputs, 0, 100)
    with pytest.raises(ValueError, match="width"):
        nq.correlators(arch, paper_inputs, -4, 100)
    with pytest.raises(ValueError, match="shape"):
        nq.correlators(arch, np.ones((6, 2)), 5, 100)
    with pytest.raises(ValueError, match="NaN"):
        nq.correlators(arch, np.array([[0.1], [np.nan]]), 5, 100)
    with pytest.raises(ValueError, match="unknown activation 'sigmoid'"):
        nq.MLP(activation="sigmoid")
    with pytest.raises(ValueError, match="even"):
        nq.correlators(arch, paper_inputs, 5, 100, max_order=5)
    with pytest.raises(ValueError, match="at most 8"):
        nq.correlators(arch, paper_inputs, 5, 100, max_order=10)
    stats = nq.correlators(arch, paper_inputs, 5, 100, max_order=2, n_batches=4)
    with pytest.raises(ValueError, match="not accumulated"):
        stats.cumulant(4)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write"):
        stats.save(blocker / "stats.zarr")
    with pytest.raises(ValueError, match="cannot write"):
        stats.save("/proc/nope/stats.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nq.GaussNet(sb0=0.5)  # constructing an architecture warns about nothing
