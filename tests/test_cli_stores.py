"""Stores that no failure can poison: every CLI misuse is a one-line error that writes nothing,
``kill -9`` mid-run loses no finished work and the rerun gives identical numbers, a finished
store extends bit for bit, and correlator stores read with plain xarray."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

import nnqft_ppl as nq
from nnqft_ppl.cli import app

runner = CliRunner()


def _run(args):
    return runner.invoke(app, [str(a) for a in args])


class _Result:
    def __init__(self, exit_code, output):
        self.exit_code, self.output = exit_code, output


def _main(args, capsys):
    """Run the console entry point (what a user's shell runs) and capture what it prints."""
    from nnqft_ppl.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return _Result(code, captured.out + captured.err)


def _ok(args):
    result = _run(args)
    assert result.exit_code == 0, result.output
    return result.output


def _one_line_error(result, *fragments):
    """Exit status 2, exactly one non-empty line, starting ``error:``, naming the fragments."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "f.zarr"
    _ok(["sample", "--arch", "erf", "--width", "3", "--n-networks", "500", "--out", out])
    return out


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["sample", "--arch", "erf", "--dtype", "float16"], ["--dtype", "float16"]),
        (["correlate", "--arch", "erf", "--n-networks", "2"], ["--n-networks", "at least 8"]),
        (["correlate", "--arch", "erf", "--checkpoint-every", "0"], ["--checkpoint-every"]),
        (["correlate", "--arch", "erf", "--workers", "-1"], ["--workers"]),
        (["rg", "--arch", "gauss", "--cutoffs", "1:0.5:3"], ["--cutoffs", "must increase"]),
        (["fit", "--arch", "erf", "--form", "quintic"], ["--form", "quintic"]),
        (["infer", "--likelihood", "x"], ["Missing option '--stats'", "nnqft infer --help"]),
        (["infer", "--arch", "erf"], ["No such option: --arch"]),
        (["correlate", "--arch", "erf", "--width", "ten"], ["--width", "valid integer"]),
    ],
)
def test_misuse_is_one_line_and_writes_nothing(tmp_path, capsys, args, fragments):
    out = tmp_path / "out.zarr"
    result = _main([*args, "--out", out], capsys)
    _one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []  # validated before anything is written


def test_a_failed_run_does_not_block_the_valid_rerun(tmp_path):
    out = tmp_path / "f.zarr"
    _one_line_error(_run(["sample", "--arch", "erf", "--dtype", "float16", "--out", out]))
    _ok(["sample", "--arch", "erf", "--width", "3", "--n-networks", "300", "--out", out])
    stored = xr.open_zarr(out, consolidated=False)["f"].values
    np.testing.assert_array_equal(
        stored, nq.sample_outputs(nq.ErfNet(), stored_inputs(out), 3, 300)
    )


def stored_inputs(path):
    return xr.open_zarr(path, consolidated=False)["inputs"].values


def test_a_store_of_the_wrong_kind_is_one_line(sample_store):
    result = _run(["infer", "--stats", sample_store])
    _one_line_error(result, "--stats", "not a correlator store")
    result = _run(["fit", "--stats", sample_store, "--arch", "erf"])
    _one_line_error(result, "--stats", "not a correlator store")


def test_a_different_ensemble_needs_overwrite(tmp_path):
    out = tmp_path / "s.zarr"
    base = ["correlate", "--arch", "relu", "--width", "3", "--n-batches", "10", "--out", out]
    _ok([*base, "--n-networks", "1000"])
    result = _run([*base, "--n-networks", "1000", "--seed", "1"])
    _one_line_error(result, "--out", "different ensemble", "--overwrite")
    _ok([*base, "--n-networks", "1000", "--seed", "1", "--overwrite"])
    assert nq.CorrelatorStats.load(out).seed == 1
    result = _run([*base, "--n-networks", "999", "--seed", "1"])
    _one_line_error(result, "--n-networks", "already holds 1000")


def test_small_ensembles_warn(tmp_path):
    result = _run(["correlate", "--arch", "relu", "--width", "3", "--n-networks", "20",
                   "--n-batches", "10", "--out", tmp_path / "s.zarr"])  # fmt: skip
    assert result.exit_code == 0 and "warning: --n-networks: 20 networks are too few" in (
        result.output
    )
    with pytest.warns(nq.SmallEnsembleWarning):
        nq.correlators(nq.ReLUNet(), [[0.5], [1.0]], 3, 20, n_batches=10)


def test_fit_writes_valid_json_with_null_for_undefined_numbers(tmp_path):
    """A one-network-wide ReLU oracle fit has an undefined chi-square; the JSON says null."""
    out = tmp_path / "fit.json"
    _ok(["fit", "--arch", "relu", "--width", "1", "--cutoff", "2", "--out", out])

    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    fit = json.loads(out.read_text(), parse_constant=refuse)  # strict: NaN is not JSON
    assert fit["chi2"] is None and fit["p_value"] is None
    assert fit["theta"][0] == pytest.approx(-0.390625, rel=1e-12)  # -25/64 at N = 1, L = 2


def test_fit_a_measured_store_with_sampler_options(tmp_path):
    store = tmp_path / "s.zarr"
    _ok(["correlate", "--arch", "relu", "--width", "20", "--n-networks", "20000",
         "--n-batches", "100", "--out", store])  # fmt: skip
    out = tmp_path / "fit.json"
    _ok(["fit", "--stats", store, "--cutoff", "2", "--method", "nuts", "--num-chains", "2",
         "--num-warmup", "200", "--num-samples", "300", "--out", out])  # fmt: skip
    fit = json.loads(out.read_text())
    assert fit["method"] == "nuts" and fit["num_samples"] == 300 and fit["num_chains"] == 2
    exact = -0.01953125  # the ReLU-net constant coupling at N = 20, cutoff 2 (= -25/64 / 20)
    assert abs(fit["mean"][0] - exact) < 4 * fit["sd"][0]


def _sums(path):
    stats = nq.CorrelatorStats.load(path)
    return stats.sums


def _assert_same_sums(a, b):
    assert a.n_networks == b.n_networks and a.batch_size == b.batch_size
    np.testing.assert_array_equal(a.counts, b.counts)
    for block in a.sums:
        for degree in a.sums[block]:
            np.testing.assert_array_equal(a.sums[block][degree], b.sums[block][degree])


def test_extending_a_store_equals_one_run_bit_for_bit(tmp_path):
    """1e5 -> 2e5 networks: networks 1e5..2e5 come from the same counter-based streams and
    keep the store's batch size (1000), so the result is one run of 2e5 in 200 batches."""
    base = ["correlate", "--arch", "relu", "--width", "3"]
    grown, fresh = tmp_path / "grown.zarr", tmp_path / "fresh.zarr"
    _ok([*base, "--n-networks", "100000", "--n-batches", "100", "--out", grown])
    _ok([*base, "--n-networks", "200000", "--n-batches", "100", "--out", grown])
    _ok([*base, "--n-networks", "200000", "--n-batches", "200", "--out", fresh])
    _assert_same_sums(_sums(grown), _sums(fresh))


def test_kill_9_mid_run_then_rerun_gives_identical_numbers(tmp_path):
    """SIGKILL the process (no clean-up runs) after it has checkpointed; rerunning the same
    command finishes, and its sums equal those of an uninterrupted run bit for bit."""
    args = ["correlate", "--arch", "relu", "--width", "3", "--n-networks", "1000000",
            "--n-batches", "100", "--checkpoint-every", "0.1"]  # fmt: skip
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    command = [sys.executable, "-m", "nnqft_ppl.cli", *args, "--out", str(killed)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not killed.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let it get into the next chunk / checkpoint write
    assert proc.poll() is None, "the run finished before it could be killed: enlarge it"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = nq.CorrelatorStats.load(killed).sums  # a readable, consistent checkpoint
    assert 0 < partial.n_accumulated < 1_000_000
    _ok([*args, "--out", killed])
    _ok([*args, "--out", clean])
    _assert_same_sums(_sums(killed), _sums(clean))


def test_correlator_store_reads_with_plain_xarray(tmp_path):
    out = tmp_path / "s.zarr"
    _ok(["correlate", "--arch", "erf", "--width", "5", "--n-networks", "2000", "--n-batches",
         "20", "--out", out])  # fmt: skip
    ds = xr.open_zarr(out)  # consolidated metadata, no library needed
    assert ds["kappa_4"].dims == ("tuple_4",) and ds["tuple_4"].values[0] == "0,0,0,0"
    assert ds.attrs["architecture_kind"] == "erf" and ds.attrs["width"] == 5
    assert ds["inputs"].shape == (6, 1)
    stats = nq.CorrelatorStats.load(out)
    np.testing.assert_array_equal(ds["kappa_4"].values, stats.cumulant(4).values)


def test_a_kill_between_the_two_renames_keeps_the_old_store(tmp_path):
    """write_store renames the old store aside, then the new one into place; killed in
    between, the old (complete) store is what the next reader or writer finds."""
    from nnqft_ppl.core.storage import open_store, write_store

    path = write_store(xr.Dataset({"a": ("x", [1.0, 2.0])}), tmp_path / "s.zarr")
    os.replace(path, tmp_path / ".s.zarr.deadbeef.old")  # write_store's first rename
    assert open_store(path)["a"].values.tolist() == [1.0, 2.0]
    write_store(xr.Dataset({"a": ("x", [3.0])}), path)
    assert open_store(path)["a"].values.tolist() == [3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no leftovers
