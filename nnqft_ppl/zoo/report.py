"""The report folder: ``index.md`` and a static ``index.html`` rebuilt from stored results only.

:func:`build_report` reads ``DIR/results/*.zarr`` (:class:`~nnqft_ppl.zoo.results.SpecResult`),
draws every figure through :mod:`nnqft_ppl.zoo.plotting` into ``DIR/figures``, writes every table
as CSV into ``DIR/tables`` and one section per spec: what it claims, the figure, the table, each
claim's measured value with its error next to the exact / analytic value, PASS/FAIL/UNRESOLVED
with the rule and the claim's power,
the ensemble sizes, the spec and the command that made it. Nothing is recomputed. The page is
written as Markdown and rendered to HTML with markdown-it-py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.storage import write_text
from ..core.validation import check_output_path
from . import plotting
from .results import STATUSES, SpecResult, load_result
from .specs import ZOO

__all__ = ["build_report", "claim_summary", "stored_results", "FIGURES"]

#: table name -> plotting function (:mod:`nnqft_ppl.zoo.plotting`).
FIGURES = {
    "falloff": plotting.plot_falloff,
    "coupling": plotting.plot_coupling_vs_width,
    "posterior": plotting.plot_posterior_summary,
    "rg": plotting.plot_rg_table,
    "g6": plotting.plot_sixpoint,
    "symmetry": plotting.plot_heldout,
    "training_kappa4": plotting.plot_training_kappa4,
    "training_ntk": plotting.plot_training_ntk,
    "deep": plotting.plot_deep_widths,
    "deep_growth": plotting.plot_deep_growth,
}

WHY_SIZES = {
    "falloff": "Each width's ensemble is sized so that m_4 exceeds 3 x its exact background "
    "at the widths used for the slope (column n_needed_m4 gives the networks needed per width).",
    "coupling": "The same ensembles as the fall-off study: lambda is resolved (> 3 sigma) at "
    "every width used for the 1/N fit.",
    "rg": "Noise-free: the connected 4-pt function comes from the exact oracle.",
    "sixpoint": "Sized so that the GP alone misses the measured G_6 by more than 3 sigma: the "
    "non-Gaussian part the prediction must account for is resolved; the rival-predictions "
    "claim says how many networks separating them would take.",
    "symmetry": "Noise-free oracle cumulants judged with the per-tuple sampling errors of the "
    "stated number of networks.",
    "training": "Every listed network is trained (the cost is networks x width x steps). The "
    "sizes resolve kappa_4 after 1000 steps at every width of the default scale, where it is "
    "large; before training it is small (S = 0.26/N) and resolving it takes ~1e4 networks per "
    "width, the coupling ~1e5 (the claims say how many). The NTK comparison needs few wide "
    "networks: the trained ensemble is narrow, so its mean is resolved to ~1%.",
    "deep": "The same number of networks at every width and depth (the kernel estimator's "
    "error of n kappa_4 does not grow with n; the Gram sampler's cost grows only like L n): "
    "enough to resolve the 1/n correction of n kappa_4 at the small widths and its "
    "extrapolation A to a few per cent; the NLO 2-pt claims say how many networks they would "
    "need where they are not resolved.",
}

_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em;line-height:1.4}"
    "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}"
    "code{background:#f4f4f4}"
)


def _order(paths: list[Path]) -> list[Path]:
    rank = {name: i for i, name in enumerate(ZOO)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def _section(r: SpecResult, out: Path) -> list[str]:
    """Markdown paragraphs of one spec's section."""
    import matplotlib.pyplot as plt

    md = [f"## {r.title}"]
    if r.description:
        md.append(r.description)
    for name, table in r.tables.items():
        csv = out / "tables" / f"{r.name}_{name}.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_dataframe().to_csv(csv)
        if name in FIGURES:
            png = out / "figures" / f"{r.name}_{name}.png"
            plt.close(FIGURES[name](table, png, title=r.title[:70]))
            md.append(f"![{r.title}: {name}]({png.relative_to(out)})")
        md.append(f"[table {name} (CSV)]({csv.relative_to(out)})")
    md.append("\n".join(f"- {_claim_line(c)}" for c in r.claims))
    md += list(r.notes)
    sizes = r.ensemble_sizes
    size_text = (
        ", ".join(f"N={k}: {v:,}" for k, v in sizes.items()) if sizes else ("none (exact oracle)")
    )
    md.append(f"Ensemble sizes ({r.scale} scale): {size_text}. {WHY_SIZES.get(r.study, '')}")
    md += [f"[posterior {key} (ArviZ netCDF)]({rel})" for key, rel in r.posteriors.items()]
    md.append(f"Made by `{r.command}` in {r.seconds:.1f} s from `{r.spec_file}`:")
    md.append(f"```toml\n{r.spec_toml.rstrip()}\n```")
    return md


def _claim_line(c) -> str:
    details = f" ({c.details})" if c.details and np.isfinite(c.measured) else ""
    return f"**{c.status}** — {c.title}: {c.describe()}.{details}"


def claim_summary(claims) -> str:
    """One paragraph: how many claims PASS, FAIL, are UNRESOLVED, and what a FAIL means among many.

    With ``n`` independent claims decided at 3 sigma, about ``n * 0.0027`` false FAILs are
    expected by chance (Gaussian tails); the note says so rather than let one FAIL read as a bug
    or many PASSes read as proof.
    """
    counts = {s: sum(c.status == s for c in claims) for s in STATUSES}
    n_tested = sum(np.isfinite(c.z) for c in claims)
    text = (
        f"{counts['PASS']} of {len(claims)} claims PASS, {counts['FAIL']} FAIL, "
        f"{counts['UNRESOLVED']} UNRESOLVED (the data at this scale cannot decide them; each "
        "says how many networks would). "
    )
    if n_tested:
        text += (
            f"{n_tested} claims are z-tests at |z| < 3: among that many, "
            f"{n_tested * 0.0027:.2g} chance FAILs are expected if every claim is true, so a "
            "single marginal FAIL is evidence to rerun at a larger scale, not proof of an error."
        )
    return text


def stored_results(out) -> list[SpecResult]:
    """The spec results stored under ``out/results``, in zoo order.

    Raises:
        ValueError: there are none.
    """
    folder = Path(out) / "results"
    stores = _order(list(folder.glob("*.zarr")))
    if not stores:
        raise ValueError(f"no stored results in {str(folder)!r}; run nnqft reproduce")
    return [load_result(p) for p in stores]


def build_report(out) -> Path:
    """(Re)build ``out/index.md`` and ``out/index.html`` from ``out/results`` only.

    Raises:
        ValueError: ``out`` cannot be written, or holds no results.

    Example:
        >>> build_report("nnqft-report")          # what ``nnqft report nnqft-report`` does
    """
    from markdown_it import MarkdownIt

    out = Path(out)
    check_output_path(out / "index.md")
    results = stored_results(out)
    claims = [c for r in results for c in r.claims]
    title = "nnqft_ppl report: neural networks as field theories"
    md = [
        f"# {title}",
        claim_summary(claims),
        "Each section below is one spec of the model zoo (`models/`): its figure, its table "
        "(CSV), every claim's measured value with its uncertainty next to the exact or analytic "
        "value, the rule that decides it and, where the data could not have failed it, how "
        "many networks would. "
        "Errors are the exact sampling errors where the library has them (single-hidden-layer "
        "nets) and jackknife errors otherwise. Rebuild with `nnqft report DIR`.",
        "\n".join(f"- {c.status}: {c.title}" for c in claims),
    ]
    for r in results:
        md += _section(r, out)
    text = "\n\n".join(md) + "\n"
    body = MarkdownIt("commonmark").render(text)
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}</body></html>\n"
    )
    write_text(out / "index.md", text)
    write_text(out / "index.html", page)
    return out / "index.md"
