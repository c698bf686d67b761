"""Claims with power: PASS / FAIL / UNRESOLVED, what each prints, the report's summary, and a
rival-claims case that the default scale cannot decide and the paper scale can."""

import numpy as np
import pytest

from nnqft_ppl.zoo.report import claim_summary
from nnqft_ppl.zoo.results import Claim, SpecResult, exact_claim, unresolved_claim, z_claim


def test_z_claim_pass_fail_and_unresolved():
    ok = z_claim("k", "t", 1.02, 0.01, 1.0, "exact", effect=0.5, n_networks=1000)
    assert ok.status == "PASS" and ok.z == pytest.approx(2.0) and ok.resolution == 0.03
    bad = z_claim("k", "t", 1.05, 0.01, 1.0, "exact", effect=0.5, n_networks=1000)
    assert bad.status == "FAIL"
    # agreement that could not have told the effect (0.02) from nothing: 3 sigma = 0.03
    weak = z_claim("k", "t", 1.0, 0.01, 1.0, "exact", effect=0.02, n_networks=1000)
    assert weak.status == "UNRESOLVED"
    # errors fall as 1/sqrt(n): (0.03 / 0.02)^2 x 1000 networks, with a 20% margin
    assert weak.needed == pytest.approx(1000 * 1.5**2 * 1.2)
    # a rejection stays a FAIL whatever the power: the data do reject the reference
    assert z_claim("k", "t", 1.5, 0.01, 1.0, "exact", effect=0.001).status == "FAIL"


def test_claims_print_z_with_its_rule_and_never_vs_zero():
    c = z_claim("k", "kappa_4", -2.69e-3, 1e-3, 0.0, "", effect=0.01, effect_label="the effect")
    text = c.describe()
    assert "z = -2.69 (rule |z| < 3)" in text and "vs  " not in text and "vs 0" not in text
    assert "resolution 0.003 (3 sigma) vs the effect 0.01" in text
    e = exact_claim("k", "t", 0.0521, 0.0595, "exact", 0.01, "|d| < 0.01")
    assert e.describe().startswith("0.0521 vs exact 0.0595") and e.status == "PASS"
    u = unresolved_claim("k", "t", "rule", "why", needed=2e6)
    assert "not resolved at this scale; needs about 2e+06 networks" in u.describe()


def test_summary_counts_every_status_and_notes_multiple_testing():
    claims = [
        z_claim("a", "t", 0.0, 1.0, 0.0, "x"),
        z_claim("b", "t", 5.0, 1.0, 0.0, "x"),
        unresolved_claim("c", "t", "rule", "why"),
    ]
    text = claim_summary(claims)
    assert text.startswith("1 of 3 claims PASS, 1 FAIL, 1 UNRESOLVED")
    assert "2 claims are z-tests" in text and "0.0054 chance FAILs" in text


def test_stored_claims_keep_their_status(tmp_path):
    claims = [z_claim("a", "t", 0.0, 1.0, 0.0, "x", effect=0.1, n_networks=10),
              exact_claim("b", "t", 1.0, 1.0, "exact", 1e-9, "rule")]  # fmt: skip
    result = SpecResult("s", "t", "falloff", "", "test", "f.toml", "", "h", "c", 1.0, {}, claims,
                        [], {}, {})  # fmt: skip
    from nnqft_ppl.zoo.results import load_result

    back = load_result(result.save(tmp_path)).claims
    assert [c.status for c in back] == ["UNRESOLVED", "PASS"]
    assert back[0].needed == pytest.approx(claims[0].needed) and np.isnan(back[1].error)
    assert isinstance(back[0], Claim)


@pytest.mark.slow
def test_rival_predictions_unresolved_at_default_and_resolved_at_paper_scale(tmp_path):
    """Gauss-net N = 10: the quartic and quartic + sextic predictions of G_6 differ by ~0.5%.
    3e5 networks (default) cannot tell them apart; 1e6 (paper) can, and they then disagree
    about which is right: the data reject the quartic-only one (measured: z = -3.5 at 1e6)."""
    from nnqft_ppl.zoo.runner import run_study
    from nnqft_ppl.zoo.specs import load_spec

    spec = load_spec("sixpoint_gauss")
    default = {c.key: c for c in run_study(spec, "default", cache=tmp_path).claims}
    assert {c.status for c in default.values()} == {"UNRESOLVED"}
    assert default["g6_prediction"].needed > 3e5
    paper = {c.key: c for c in run_study(spec, "paper", cache=tmp_path).claims}
    assert paper["g6_with_sextic"].status == "PASS"
    assert paper["g6_prediction"].status == "FAIL"
    assert paper["g6_with_sextic"].resolution < abs(paper["g6_with_sextic"].effect)
