"""Measured correlators against the GP kernel and the exact finite-width oracle."""

import warnings

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.core.linalg import chi_square
from tests.conftest import P_MIN

N_BIG = 1_000_000


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
    test = chi_square(stats.cumulant(4) - exact, stats.covariance(4, method="exact"))
    assert test.p_value > P_MIN, test
    # The same with the jackknife covariance (light tails: it can be trusted).
    test_jk = chi_square(stats.cumulant(4) - exact, stats.covariance(4))
    assert test_jk.p_value > P_MIN, test_jk


@pytest.mark.parametrize("case", list(CASES))
def test_connected_six_point_function_matches_the_oracle(ensembles, case):
    stats = ensembles[case]
    exact = nq.exact_cumulant(stats.arch, stats.X, stats.width, 6)
    test = chi_square(stats.cumulant(6) - exact, stats.covariance(6))
    assert test.p_value > P_MIN, test


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
    detects it by comparing jackknife and exact errors, and warns."""
    with pytest.warns(nq.BatchErrorWarning, match="exact"):
        stats = nq.correlators(nq.GaussNet(), paper_inputs, 10, N_BIG, seed=1, max_order=4)
    assert np.median(stats.error_ratio().values) < 0.2
    # With the honest covariance the measurement is consistent with the oracle.
    exact = nq.exact_cumulant(stats.arch, paper_inputs, 10, 4)
    assert (
        chi_square(stats.cumulant(4) - exact, stats.covariance(4, method="exact")).p_value > P_MIN
    )


def test_float32_forward_pass_does_not_bias_kappa4(paper_inputs):
    arch = nq.ErfNet()
    f32 = nq.correlators(arch, paper_inputs, 5, N_BIG, seed=2, max_order=4, dtype="float32")
    exact = nq.exact_cumulant(arch, paper_inputs, 5, 4)
    assert chi_square(f32.cumulant(4) - exact, f32.covariance(4, method="exact")).p_value > P_MIN


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
