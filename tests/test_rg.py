"""RG flow of the measured coupling, its figure, and the ``nnqft rg`` / ``nnqft fit`` commands."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import nnqft_ppl as nq
from nnqft_ppl.cli import app
from nnqft_ppl.oracle.exact import exact_cumulant

PAPER_X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])
RELU_X = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_relu_slope_is_minus_d_plus_4(d):
    """The exponent follows from the degree-1 homogeneity of K_int in y; the quadrature over
    the box (with its kinks) has to reproduce it in every dimension."""
    rng = np.random.default_rng(d)
    X = RELU_X if d == 1 else rng.uniform(0.2, 1.2, (5 if d == 2 else 3, d))
    arch = nq.ReLUNet(d_in=d, sw0=1.3)
    Ls = np.geomspace(0.5, 10, 21 if d < 3 else 3)
    flow = nq.rg_flow(arch, X, exact_cumulant(arch, X, 20, 4), cutoffs=Ls)
    assert flow.analytic_exponent == -(d + 4)
    assert abs(flow.slope - flow.analytic_exponent) < 1e-8
    assert flow.r2 > 1 - 1e-12 and not flow.stops
    assert flow.coupling.dims == ("cutoff",) and flow.tuple_coupling.sizes["cutoff"] == len(Ls)


def test_gauss_net_flow_stops_at_the_all_space_value():
    arch = nq.GaussNet(sb0=0.5)
    flow = nq.rg_flow(
        arch, PAPER_X, exact_cumulant(arch, PAPER_X, 100, 4), cutoffs=np.geomspace(0.5, 20, 15)
    )
    assert flow.stops and flow.analytic_exponent is None
    assert flow.coupling.values[-1] == pytest.approx(flow.limit, rel=1e-10)
    assert abs(flow.coupling.values[0] / flow.limit - 1) > 0.1  # it did flow at small L
    assert "stops" in flow.summary()


def test_relu_with_bias_has_no_analytic_exponent_and_errors_propagate():
    arch = nq.ReLUNet(sb0=1.0, sb1=1.0)
    from nnqft_ppl.oracle.exact import exact_covariance

    cov = exact_covariance(arch, RELU_X, 20, 4) / 1e6
    flow = nq.rg_flow(
        arch, RELU_X, exact_cumulant(arch, RELU_X, 20, 4), [1.0, 2.0, 4.0], covariance=cov
    )
    assert flow.analytic_exponent is None
    assert np.all(flow.coupling.stderr.values > 0)


@pytest.mark.parametrize("bad", [1.0, [1.0], [1.0, 1.0], [1.0, -2.0]])
def test_bad_cutoffs(bad):
    with pytest.raises(ValueError, match="cutoff"):
        nq.rg_flow(nq.ReLUNet(), RELU_X, exact_cumulant(nq.ReLUNet(), RELU_X, 20, 4), bad)


def test_figures(tmp_path):
    """The figures draw the data they are given (read back from the returned figure) and are
    written as images of the stated size (6 x 4.5 and 10 x 4.2 inches at 120 dpi), not blank."""
    from matplotlib.image import imread

    from nnqft_ppl.zoo.plotting import plot_correlator_comparison, plot_rg_flow

    arch = nq.ReLUNet()
    k4 = exact_cumulant(arch, RELU_X, 20, 4)
    flow = nq.rg_flow(arch, RELU_X, k4, np.geomspace(1, 10, 5))
    fig = plot_rg_flow({"ReLU": flow}, tmp_path / "rg.png")
    measured, fitted, analytic = fig.axes[0].lines[:3]
    np.testing.assert_allclose(measured.get_xdata(), flow.coupling.cutoff.values)
    np.testing.assert_allclose(measured.get_ydata(), np.abs(flow.coupling.values))
    # the fitted and the analytic power laws have slope -(d + 4) = -5 on the log-log axes
    for line in (fitted, analytic):
        x, y = line.get_data()
        np.testing.assert_allclose(np.diff(np.log(y)) / np.diff(np.log(x)), -5, rtol=1e-8)
    fit = nq.fit_coupling(nq.couplings.Constant(), arch, RELU_X, k4, None, 1.0)
    pred = fit.predict(arch, RELU_X)
    fig = plot_correlator_comparison(k4, pred, tmp_path / "k4.png")
    points = fig.axes[0].lines[0]
    np.testing.assert_allclose(points.get_xdata(), pred.values)
    np.testing.assert_allclose(points.get_ydata(), k4.values)
    for name, size in (("rg.png", (540, 720)), ("k4.png", (504, 1200))):
        image = imread(tmp_path / name)
        assert image.shape[:2] == size and image[..., :3].std() > 0.05, (name, image.shape)


def test_cli_rg_and_fit(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["rg", "--arch", "relu", "--cutoffs", "1:10:5", "--json", str(tmp_path / "rg.json")]
    )
    assert result.exit_code == 0, result.output
    flow = json.loads((tmp_path / "rg.json").read_text())
    assert flow["analytic_exponent"] == -5 and flow["slope"] == pytest.approx(-5, abs=1e-8)
    result = runner.invoke(
        app,
        [
            "fit",
            "--method",
            "lsq",
            "--arch",
            "gauss",
            "--sb0",
            "0.5",
            "--width",
            "100",
            "--out",
            str(tmp_path / "fit.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["names"] == ["lambda"]
    # the library's fit of the exact oracle at the classic Gauss-net inputs (all of space)
    arch = nq.GaussNet(sb0=0.5)
    X = nq.paper_inputs(arch)
    ref = nq.fit_coupling(nq.couplings.Constant(), arch, X, exact_cumulant(arch, X, 100, 4))
    assert fit["theta"] == pytest.approx(list(ref.theta), rel=1e-10)
    for args, word in (
        (["fit", "--method", "magic"], "--method"),
        (["fit", "--arch", "erf"], "--cutoff"),
        (["fit", "--form", "wavy", "--cutoff", "1"], "--form"),
        (["rg", "--cutoffs", "1:x"], "--cutoffs"),
        (["rg", "--inputs", "a,b"], "--inputs"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and word in result.output, (args, result.output)
