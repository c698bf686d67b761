"""Every shipped spec validates; every bad spec gets a one-line error naming the problem."""

from pathlib import Path

import pytest

import nnqft_ppl as nq
from nnqft_ppl.zoo.runner import zoo_paths
from nnqft_ppl.zoo.specs import ZOO

MODELS = Path(__file__).resolve().parent.parent / "models"
GOOD = """
name = "mine"
title = "t"
study = "falloff"
[architecture]
kind = "relu"
[ensemble]
widths = [2, 5]
n_networks = 10000
"""


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_specs_validate(path):
    spec = nq.load_spec(path)
    arch = spec.architecture_for()
    X = spec.inputs_for(arch)
    assert X.shape[1] == arch.d_in
    for scale in ("default", "paper", "test"):
        resolved = spec.at_scale(scale)
        sizes = resolved.ensemble_sizes()
        if scale == "paper" and sizes:
            assert set(sizes.values()) == {1_000_000}


def test_zoo_covers_every_study_and_ships():
    assert all(p.exists() for p in zoo_paths())
    studies = {nq.load_spec(p).study for p in zoo_paths()}
    assert studies == {"falloff", "coupling", "rg", "sixpoint", "symmetry", "training", "deep"}
    assert len(ZOO) == len(set(ZOO))


def test_spec_yields_numpyro_model():
    import numpy as np

    spec = nq.load_spec(MODELS / "coupling_relu.toml")
    arch = spec.architecture_for()
    stats = nq.correlators(
        arch, spec.inputs_for(arch), 20, 2000, max_order=4, n_batches=20, check_errors=False
    )
    model, kwargs = nq.spec_model(spec, stats)
    assert callable(model) and list(kwargs["data"].names) == ["lambda"]
    assert np.isfinite(kwargs["data"].observed).all()


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


BAD = {
    "unknown_arch": (
        GOOD.replace('"relu"', '"sigmoid"'),
        ["architecture.kind", "sigmoid", "gauss"],
    ),
    "zero_width": (GOOD.replace("[2, 5]", "[2, 0]"), ["ensemble.widths", "positive", "0"]),
    "cutoff": (GOOD + "[theory]\ncutoff = 0.0\n", ["theory.cutoff", "0.0", "greater than 0"]),
    "negative_cutoff": (GOOD + "[theory]\ncutoff = -1\n", ["theory.cutoff", "-1"]),
    "malformed": (GOOD + "[theory\n", ["malformed TOML"]),
    "unknown_field": (GOOD + "[theory]\ncutof = 1.0\n", ["theory.cutof", "unknown field"]),
    "missing": (GOOD.replace('study = "falloff"', ""), ["missing", "study"]),
    "bad_study": (GOOD.replace('"falloff"', '"fit"'), ["study", "'fit'", "falloff"]),
    "inference_width": (
        GOOD + "[inference]\nwidth = 7\n",
        ["inference.width = 7", "ensemble.widths"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_one_line_error(assert_spec_error, case):
    assert_spec_error(*BAD[case])


def test_missing_file():
    with pytest.raises(nq.SpecError, match="no spec file at 'nowhere.toml'"):
        nq.load_spec("nowhere.toml")


def test_cli_bad_spec_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from nnqft_ppl.cli import app

    path = _write(tmp_path, GOOD.replace("[2, 5]", "[0]"))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "ensemble.widths" in lines[0]
