"""The training study (zoo kind "training"), its spec table and the mixed-precision option.

Regression set as in tests/test_training.py: 8 points of ``sin(3x)`` on ``[-1, 1]``, the five test
inputs of ``models/training_erf.toml``, Erf-net ``sw0 = 4, sb1 = 0``, ``eta = 1 / lambda_max``.
Statistical tolerances are in standard errors of the quantity tested; seeds are fixed.
"""

from pathlib import Path

import numpy as np
import pytest

import nnqft_ppl as nq
from nnqft_ppl.ensembles.sampler import sample_outputs
from nnqft_ppl.ensembles.training import correlator_stats_from_outputs, train_ensemble
from nnqft_ppl.networks.ntk import learning_rate_limit
from nnqft_ppl.theory.ntk_gp import ntk_predict
from nnqft_ppl.zoo.results import STATUSES, load_result, result_path
from nnqft_ppl.zoo.runner import run_spec, run_study
from nnqft_ppl.zoo.studies.training import _ntk_claims, _untrained_claim, kappa4_row, ntk_row

#: The spec file itself (the zoo name resolves to the installed package's copy).
SPEC = Path(__file__).resolve().parent.parent / "models" / "training_erf.toml"
ARCH = nq.ErfNet(sw0=4.0, sb1=0.0)
X_TRAIN = np.linspace(-1, 1, 8)[:, None]
Y_TRAIN = np.sin(3 * X_TRAIN[:, 0])
X = np.array([[-0.8], [-0.35], [0.1], [0.55], [0.9]])
ETA = 0.5 * learning_rate_limit(ARCH, X_TRAIN)
DIAG = [",".join([str(i)] * 4) for i in range(5)]


@pytest.fixture(scope="module")
def test_scale_run(tmp_path_factory):
    """``nnqft run training_erf --scale test`` into a folder (about 15 s), and its result."""
    out = tmp_path_factory.mktemp("training")
    run_spec(SPEC, out, scale="test")
    return out, load_result(result_path(out, "training_erf"))


# --------------------------------------------------------------------------- the study
def test_study_at_test_scale_makes_its_tables_and_claims(test_scale_run):
    _, r = test_scale_run
    spec = nq.load_spec(SPEC).at_scale("test")
    steps, widths = spec.training.steps_recorded(), spec.ensemble.widths
    k4 = r.tables["training_kappa4"]
    assert k4.S.dims == ("step", "width")
    assert list(k4.step.values) == steps and list(k4.width.values) == widths
    assert np.all(np.isfinite(k4.S.values)) and np.all(k4.S_err.values > 0)
    assert set(r.tables) == {
        "training_kappa4",
        "training_exponent",
        "training_ntk",
        "training_coupling",
    }
    keys = [c.key for c in r.claims]
    assert keys == [
        "kappa4_untrained",
        "ntk_mean_t10",
        "ntk_cov_t10",
        "ntk_mean_t100",
        "ntk_cov_t100",
        "kappa4_exponent",
        "coupling_untrained",
    ]
    assert all(c.status in STATUSES for c in r.claims)
    # the wide ensemble is the NTK Gaussian process (256 networks of width 256, 16 networks:
    # the finite-width bias of the mean is ~0.1 standard errors at this size)
    for c in r.claims:
        if c.key.startswith("ntk_"):
            assert c.status == "PASS", c.line()
    # the coupling table: t = 0 with the exact and the jackknife covariance, then the last step
    fits = r.tables["training_coupling"]
    assert [int(s) for s in fits.step.values] == [0, 0, steps[-1]]
    assert [str(c) for c in fits.covariance.values] == ["exact", "jackknife", "jackknife"]
    assert all("describe" in str(v) for v in fits.verdict.values)


def test_untrained_column_is_the_exact_oracle(test_scale_run):
    """``S_exact`` at t = 0 is mean_x kappa_4(x,x,x,x) / (3 K(x,x)^2) of exact_cumulant, and
    ``N S_exact`` does not depend on N (one hidden layer: kappa_4 = c / N exactly)."""
    _, r = test_scale_run
    t0 = r.tables["training_kappa4"].sel(step=0)
    K = nq.kernel(ARCH, X)
    for N in t0.width.values:
        k4 = nq.exact_cumulant(ARCH, X, int(N), 4).sel(tuple=DIAG).values
        expected = np.mean(k4 / (3 * np.diag(K) ** 2))
        assert float(t0.S_exact.sel(width=N)) == pytest.approx(expected, rel=1e-12)
    NS = t0.width.values * t0.S_exact.values
    np.testing.assert_allclose(NS, NS[0], rtol=1e-10)


def test_report_draws_the_training_figures(test_scale_run):
    from nnqft_ppl.zoo.report import build_report

    out, _ = test_scale_run

    build_report(out)
    for name in ("training_kappa4", "training_ntk"):
        assert (out / "figures" / f"training_erf_{name}.png").stat().st_size > 10_000
    md = (out / "index.md").read_text()
    assert "what training does to the non-Gaussianity" in md
    assert "Every listed network is trained" in md  # WHY_SIZES["training"]


def test_trained_outputs_are_cached(tmp_path):
    from nnqft_ppl.zoo.studies.training import trained_outputs

    args = (ARCH, X_TRAIN, Y_TRAIN, X, 8, 20, 10, ETA, 0, [0, 10])
    first = trained_outputs(*args, cache=tmp_path)
    (store,) = tmp_path.glob("trained_*.zarr")
    again = trained_outputs(*args, cache=tmp_path)
    np.testing.assert_array_equal(first.values, again.values)
    trained_outputs(*args[:-2], 1, [0, 10], cache=tmp_path)  # another seed: another store
    assert len(list(tmp_path.glob("trained_*.zarr"))) == 2 and store.exists()


# --------------------------------------------------------------------------- the statistics
def test_kappa4_summary_is_the_diagonal_kurtosis_in_ntk_units():
    """``S`` against a direct NumPy computation on the centred outputs (1e-10), and its error
    against the jackknife standard errors of the diagonal cumulants (the exact relation for one
    input: P = 1)."""
    f = train_ensemble(ARCH, X_TRAIN, Y_TRAIN, X, 8, 500, 30, ETA, seed=3).values
    sigma = ntk_predict(ARCH, X_TRAIN, Y_TRAIN, X, 30, ETA).covariance
    stats = correlator_stats_from_outputs(ARCH, X, 8, f, 4, 50, 3, center="mean")
    row = kappa4_row(stats, sigma)
    c = f - f.mean(0)
    k4 = np.mean(c**4, 0) - 3 * np.mean(c**2, 0) ** 2
    assert row["S"] == pytest.approx(np.mean(k4 / (3 * np.diag(sigma) ** 2)), rel=1e-10)
    assert row["kurtosis"] == pytest.approx(np.mean(k4 / (3 * np.mean(c**2, 0) ** 2)), rel=1e-10)
    one = correlator_stats_from_outputs(ARCH, X[:1], 8, f[:, :1], 4, 50, 3, center="mean")
    single = kappa4_row(one, sigma[:1, :1])
    expected = one.stderr(4).item() / (3 * sigma[0, 0] ** 2)
    assert single["S_err"] == pytest.approx(expected, rel=1e-10)


def test_untrained_kappa4_claim_passes_and_catches_a_planted_wrong_oracle():
    """Untrained Erf-net (steps = 0 outputs are sample_outputs bit for bit) at N = 2 and 3,
    20000 networks each: the exact N S = 0.262 (from exact_cumulant) is resolved (error ~0.02),
    so the claim PASSes, and a planted oracle 30% too large FAILs (|z| ~ 4)."""
    import xarray as xr

    K = nq.kernel(ARCH, X)
    rows = []
    for N in (2, 3):
        f = sample_outputs(ARCH, X, N, 20_000, seed=5)
        stats = correlator_stats_from_outputs(ARCH, X, N, f, 4, 200, 5, center="mean")
        row = kappa4_row(stats, K, nq.exact_cumulant(ARCH, X, N, 4).values)
        rows.append(row | {"N_S": N * row["S"], "N_S_err": N * row["S_err"], "n_networks": 20_000})
    table = xr.Dataset(
        {k: (("step", "width"), [[r[k] for r in rows]]) for k in rows[0]},
        coords={"step": [0], "width": [2, 3]},
    )
    claim = _untrained_claim(ARCH, table)
    assert claim.status == "PASS", claim.line()
    # N S_exact = 0.2624 at every width (the t = 0 column of the default-scale run)
    assert claim.reference == pytest.approx(0.2624, rel=1e-3)
    planted = table.assign(S_exact=table.S_exact * 1.3)
    assert _untrained_claim(ARCH, planted).status == "FAIL"


def test_ntk_claims_catch_a_planted_wrong_prediction():
    """16 networks of width 1024 after 100 steps agree with ntk_predict (summaries within 4
    errors; the documented finite-width bias at this width is < 1 error for 16 networks);
    a prediction with a mean 5% too large or a covariance twice too large is rejected."""
    import xarray as xr

    K = nq.kernel(ARCH, X)
    f = train_ensemble(ARCH, X_TRAIN, Y_TRAIN, X, 1024, 16, 100, ETA, seed=1).values
    mean, cov = ntk_predict(ARCH, X_TRAIN, Y_TRAIN, X, 100, ETA)
    rows = {
        "right": ntk_row(ARCH, X, 1024, f, mean, cov, K, 16, 1),
        "mean": ntk_row(ARCH, X, 1024, f, 1.05 * mean, cov, K, 16, 1),
        "cov": ntk_row(ARCH, X, 1024, f, mean, 2.0 * cov, K, 16, 1),
    }
    right = rows["right"]
    assert abs(right["mean_summary"] - 1) < 4 * right["mean_err"]
    assert abs(right["cov_summary"] - 1) < 4 * right["cov_err"]

    def claims(row):
        table = xr.Dataset(
            {k: (("ntk_width", "step"), [[v]]) for k, v in row.items()},
            coords={"ntk_width": [1024], "step": [100]},
        )
        return {c.key: c for c in _ntk_claims(ARCH, table, 16, {"ntk"})}

    assert [c.status for c in claims(right).values()] == ["PASS", "PASS"]
    assert claims(rows["mean"])["ntk_mean_t100"].status == "FAIL"
    assert claims(rows["cov"])["ntk_cov_t100"].status == "FAIL"


# --------------------------------------------------------------------------- mixed precision
def test_mixed_precision_is_close_for_a_wide_smooth_net():
    """Erf-net at width 256, 100 steps: float32 passes with float64 parameters move the outputs
    by ~1e-7 (measured 4e-7 after 1000 steps at width 64), far below the ensemble's spread
    (~0.01) and its finite-width deviation from the NTK (~1e-3)."""
    args = (ARCH, X_TRAIN, Y_TRAIN, X, 256, 8, 100, ETA)
    f64 = train_ensemble(*args, seed=2)
    mixed = train_ensemble(*args, seed=2, precision="mixed")
    assert mixed.attrs["precision"] == "mixed" and mixed.dtype == np.float64
    np.testing.assert_allclose(mixed.values, f64.values, atol=1e-5)
    assert np.abs(mixed.values - f64.values).max() > 0  # it did compute in float32
    with pytest.raises(ValueError, match="precision must be one of") as err:
        train_ensemble(*args, precision="float16")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the spec
GOOD = """
name = "mine"
title = "t"
study = "training"
[architecture]
kind = "erf"
sw0 = 4.0
[inputs]
points = [[0.1], [0.5]]
[ensemble]
widths = [4, 8]
n_networks = 1000
[training]
steps = 100
snapshots = [0, 10, 100]
"""

BAD = {
    "snapshot_beyond_steps": (
        GOOD.replace("[0, 10, 100]", "[0, 200]"),
        ["training.snapshots", "[0, steps = 100]", "200"],
    ),
    "rate": (GOOD + "rate_factor = 2.5\n", ["training.rate_factor", "2.5", "less than 2"]),
    "range": (GOOD + "x_min = 1.0\nx_max = 0.0\n", ["training.x_max", "exceed x_min"]),
    "precision": (GOOD + 'precision = "half"\n', ["training.precision", "'half'", "float64"]),
    "no_training": (GOOD.split("[training]")[0], ["study 'training' needs a [training] table"]),
    "d_in": (
        GOOD.replace("sw0 = 4.0", "sw0 = 4.0\nd_in = 2").replace(
            "[[0.1], [0.5]]", "[[0.1, 0.0], [0.5, 0.0]]"
        ),
        ["d_in must be 1", "got 2"],
    ),
    "scale_snapshots": (
        GOOD + "[scale.test]\nsnapshots = [0, 500]\n",
        ["scale.test", "snapshots", "500"],
    ),
    "unknown": (GOOD + "step = 3\n", ["training.step", "unknown field"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_training_spec_one_line_error(assert_spec_error, case):
    assert_spec_error(*BAD[case])


def test_spec_scales_override_the_training_table():
    spec = nq.load_spec(SPEC)
    assert spec.training.steps_recorded() == [0, 10, 100, 1000]
    test, paper = spec.at_scale("test").training, spec.at_scale("paper").training
    assert (test.steps, test.steps_recorded(), test.ntk_widths) == (100, [0, 10, 100], [256])
    assert paper.ntk_widths == [1024, 4096] and paper.ntk_networks == 256
    X_train, y = spec.training.training_set()
    np.testing.assert_array_equal(X_train, X_TRAIN)
    np.testing.assert_array_equal(y, Y_TRAIN)


# --------------------------------------------------------------------------- statistics (slow)
@pytest.mark.slow
def test_default_scale_claims():
    """The default scale (about 1.5 minutes): the NTK summaries at width 1024 within 4 errors
    of 1 (measured |z| <= 2.3), the untrained kappa_4 within 3 errors of the exact oracle."""
    result = run_study(nq.load_spec(SPEC), "default")
    claims = {c.key: c for c in result.claims}
    for key, c in claims.items():
        if key.startswith("ntk_"):
            assert abs(c.z) < 4, c.line()
    assert abs(claims["kappa4_untrained"].z) < 3
    # after 1000 steps kappa_4 is large at the narrow widths: at least 3 widths resolve it, so
    # the exponent is measured (it is far steeper than -1 there: docs/training.md)
    assert claims["kappa4_exponent"].status == "PASS", claims["kappa4_exponent"].line()
    assert claims["kappa4_exponent"].measured < -1
