"""``nnqft sample`` and ``nnqft correlate``: outputs, resumption and one-line errors."""

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import nnqft_ppl as nq
from nnqft_ppl.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_sample_writes_the_same_outputs_as_the_library(tmp_path):
    out = tmp_path / "f.zarr"
    args = "sample --arch erf --width 5 --n-networks 300 --seed 4 --out".split() + [str(out)]
    _ok(args)
    stored = xr.open_zarr(out, consolidated=False)["f"].values
    expected = nq.sample_outputs(nq.ErfNet(), nq.paper_inputs(nq.ErfNet()), 5, 300, 4)
    np.testing.assert_array_equal(stored, expected)
    # a second run finds the work done and keeps it
    assert "300 networks" in _ok(args)
    np.testing.assert_array_equal(xr.open_zarr(out, consolidated=False)["f"].values, expected)


def test_sample_resumes_an_interrupted_store(tmp_path):
    import zarr

    out = tmp_path / "f.zarr"
    args = ["sample", "--arch", "relu", "--width", "3", "--n-networks", "200", "--out", str(out)]
    _ok(args)
    full = xr.open_zarr(out, consolidated=False)["f"].values.copy()
    group = zarr.open_group(out, mode="a")
    group["f"][100:] = np.nan  # as if interrupted after 100 networks
    group.attrs["n_complete"] = 100
    _ok(args)
    np.testing.assert_array_equal(xr.open_zarr(out, consolidated=False)["f"].values, full)


def test_correlate_several_widths_and_resume(tmp_path):
    out = tmp_path / "stats.nc"
    args = [
        "correlate",
        "--arch",
        "gauss",
        "--sb0",
        "0.5",
        "--width",
        "3",
        "--width",
        "30",
        "--n-networks",
        "4000",
        "--max-order",
        "4",
        "--n-batches",
        "20",
        "--out",
        str(out),
    ]
    text = _ok(args)
    assert "m_4" in text
    stats = nq.CorrelatorStats.load(tmp_path / "stats-N3.nc")
    assert stats.n_networks == 4000 and stats.width == 3
    assert "already complete" in _ok(args)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--width", "0"], "--width"),
        (["--width", "-5"], "--width"),
        (["--arch", "sigmoid"], "unknown architecture"),
        (["--inputs", "0.1,nan"], "NaN"),
        (["--inputs", "0.1,0.2;0.3"], "--inputs"),
        (["--max-order", "5"], "even"),
        (["--n-networks", "0"], "--n-networks"),
    ],
)
def test_bad_options_give_one_clear_error(tmp_path, args, message):
    result = runner.invoke(
        app, ["correlate", "--arch", "erf", *args, "--out", str(tmp_path / "s.zarr")]
    )
    assert result.exit_code != 0
    assert message in result.output


def test_unwritable_output_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["correlate", "--arch", "erf", "--out", str(blocker / "s.zarr")])
    assert result.exit_code != 0 and "cannot write" in result.output
