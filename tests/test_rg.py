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
    from nnqft_ppl.zoo.plotting import plot_correlator_comparison, plot_rg_flow

    arch = nq.ReLUNet()
    k4 = exact_cumulant(arch, RELU_X, 20, 4)
    flow = nq.rg_flow(arch, RELU_X, k4, np.geomspace(1, 10, 5))
    plot_rg_flow({"ReLU": flow}, tmp_path / "rg.png")
    fit = nq.fit_coupling(nq.couplings.Constant(), arch, RELU_X, k4, None, 1.0)
    plot_correlator_comparison(k4, fit.predict(arch, RELU_X), tmp_path / "k4.png")
    assert (tmp_path / "rg.png").stat().st_size > 1000
    assert (tmp_path / "k4.png").stat().st_size > 1000


def test_cli_rg_and_fit(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["rg", "--arch", "relu", "--cutoffs", "1:10:5", "--json", str(tmp_path / "rg.json")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "rg.json").read_text())["analytic_exponent"] == -5
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
    assert json.loads((tmp_path / "fit.json").read_text())["names"] == ["lambda"]
    for args, word in (
        (["fit", "--method", "magic"], "--method"),
        (["fit", "--arch", "erf"], "--cutoff"),
        (["fit", "--form", "wavy", "--cutoff", "1"], "--form"),
        (["rg", "--cutoffs", "1:x"], "--cutoffs"),
        (["rg", "--inputs", "a,b"], "--inputs"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and word in result.output, (args, result.output)
