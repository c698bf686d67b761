"""A tiny-scale reproduce: report pages and figures, resumption after an interruption, rebuild,
and one-line errors for folders that cannot be written."""

import pytest
from typer.testing import CliRunner

import nnqft_ppl.zoo.runner as rp
from nnqft_ppl.cli import app
from nnqft_ppl.zoo.runner import reproduce

SPECS = ["falloff_relu", "rg_gauss"]


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """Run two specs; the second is interrupted (Ctrl-C) after the first is stored; rerun."""
    out = tmp_path_factory.mktemp("report")
    real = rp.run_study
    calls = []

    def interrupting(spec, *args, **kwargs):
        calls.append(spec.name)
        if spec.name == "rg_gauss":
            raise KeyboardInterrupt
        return real(spec, *args, **kwargs)

    rp.run_study = interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            reproduce(out, "test", specs=SPECS, log=lambda *a: None)
    finally:
        rp.run_study = real
    first = list(calls)
    stored = sorted(p.name for p in (out / "results").iterdir())

    def counting(spec, *args, **kwargs):
        calls.append(spec.name)
        return real(spec, *args, **kwargs)

    rp.run_study = counting
    try:
        records = reproduce(out, "test", specs=SPECS, log=lambda *a: None)
    finally:
        rp.run_study = real
    return out, first, stored, calls[len(first) :], records


def test_interrupted_run_resumes_without_recomputing(interrupted_then_resumed):
    out, first, stored, second, records = interrupted_then_resumed
    assert first == ["falloff_relu", "rg_gauss"]
    assert stored == ["falloff_relu.zarr"]  # the finished spec survived the interruption
    assert second == ["rg_gauss"]  # ... and was not recomputed
    assert [r.skipped for r in records] == [True, False]


def test_report_pages_and_figures(interrupted_then_resumed):
    out = interrupted_then_resumed[0]
    md = (out / "index.md").read_text()
    assert "## ReLU-net: non-Gaussianity falls as 1/N" in md
    assert "nnqft reproduce --scale test" in md
    # the summary and every claim line come from the stored claims: they cannot disagree
    claims = [c for p in sorted((out / "results").glob("*.zarr")) for c in rp.load_result(p).claims]
    counts = {s: sum(c.status == s for c in claims) for s in ("PASS", "FAIL", "UNRESOLVED")}
    assert (
        f"{counts['PASS']} of {len(claims)} claims PASS, {counts['FAIL']} FAIL, "
        f"{counts['UNRESOLVED']} UNRESOLVED" in md
    )
    for c in claims:
        assert f"**{c.status}** — {c.title}: {c.describe()}" in md
    assert (out / "index.html").read_text().startswith("<!DOCTYPE html>")
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["falloff_relu_falloff.png", "rg_gauss_rg.png"]
    assert (out / "tables" / "falloff_relu_falloff.csv").exists()
    result = rp.load_result(out / "results" / "rg_gauss.zarr")
    assert result.claims[0].key == "rg_stops_d1" and result.claims[0].passed
    assert result.spec_file == "models/rg_gauss.toml"  # named relative to the zoo


def test_report_command_rebuilds_from_stored_results(interrupted_then_resumed):
    out = interrupted_then_resumed[0]
    (out / "index.md").unlink()
    (out / "index.html").unlink()
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.md").exists() and (out / "index.html").exists()


def test_unwritable_report_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["reproduce", "--out", str(blocker / "report")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot write output" in lines[0], result.output


def test_report_of_empty_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no stored results" in result.output


def test_unknown_scale_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--out", str(tmp_path), "--scale", "huge"])
    assert result.exit_code == 2 and "--scale: 'huge' is not allowed" in result.output
