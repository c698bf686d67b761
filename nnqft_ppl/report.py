"""The report folder: ``index.md`` and a static ``index.html`` rebuilt from stored results only.

:func:`build_report` reads ``DIR/results/*.zarr`` (written by :mod:`nnqft_ppl.zoo`),
draws every figure through :mod:`nnqft_ppl.plotting` into ``DIR/figures``, writes every table
as CSV into ``DIR/tables`` and one section per spec: what it claims, the figure, the table, each
claim's measured value with its error next to the exact / analytic value, PASS/FAIL with the rule,
the ensemble sizes, the spec and the command that made it. Nothing is recomputed.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .checks import check_output_path
from .studies.common import fmt
from .zoo import ZOO, load_result

__all__ = ["build_report", "FIGURES"]

#: table name -> plotting function name (:mod:`nnqft_ppl.plotting`).
FIGURES = {
    "falloff": "plot_falloff",
    "coupling": "plot_coupling_vs_width",
    "posterior": "plot_posterior_summary",
    "rg": "plot_rg_table",
    "g6": "plot_sixpoint",
    "symmetry": "plot_heldout",
}

WHY_SIZES = {
    "falloff": "Each width's ensemble is sized so that m_4 exceeds 3 x its exact background "
    "at the widths used for the slope (column n_needed_m4 gives the networks needed per width).",
    "coupling": "The same ensembles as the fall-off study: lambda is resolved (> 3 sigma) at "
    "every width used for the 1/N fit.",
    "rg": "Noise-free: the connected 4-pt function comes from the exact oracle.",
    "sixpoint": "Sized so that the GP alone misses the measured G_6 by more than 3 sigma "
    "(z_GP): the non-Gaussian part the prediction must account for is resolved.",
    "symmetry": "Noise-free oracle cumulants judged with the per-tuple sampling errors of the "
    "stated number of networks.",
}


def _order(paths: list[Path]) -> list[Path]:
    rank = {name: i for i, name in enumerate(ZOO)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def _blocks_for(tree, out: Path) -> tuple[list, list]:
    """Report blocks of one spec result and its claims."""
    from . import plotting

    a = tree.attrs
    name = a["name"]
    claims = json.loads(a["claims"])
    blocks = [("h2", a["title"])]
    if a.get("description"):
        blocks.append(("p", a["description"]))
    for table_name in tree.children:
        ds = tree[table_name].to_dataset()
        csv = out / "tables" / f"{name}_{table_name}.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        ds.to_dataframe().to_csv(csv)
        if table_name in FIGURES:
            png = out / "figures" / f"{name}_{table_name}.png"
            fig = getattr(plotting, FIGURES[table_name])(ds, png, title=a["title"][:70])
            import matplotlib.pyplot as plt

            plt.close(fig)
            blocks.append(("img", str(png.relative_to(out))))
        blocks.append(("link", (f"table {table_name} (CSV)", str(csv.relative_to(out)))))
    for c in claims:
        verdict = "PASS" if c["passed"] else "FAIL"
        blocks.append(
            (
                "claim",
                (
                    verdict,
                    f"**{verdict}** — {c['title']}: measured **{fmt(c['measured'], c['error'])}**"
                    f" vs {c['reference_label']} **{c['reference']:.6g}**. Rule: {c['rule']}."
                    + (f" ({c['details']})" if c["details"] else ""),
                ),
            )
        )
    for note in json.loads(a.get("notes", "[]")):
        blocks.append(("p", note))
    sizes = json.loads(a.get("ensemble_sizes", "{}"))
    size_text = (
        ", ".join(f"N={k}: {v:,}" for k, v in sizes.items()) if sizes else "none (exact oracle)"
    )
    blocks.append(
        ("p", f"Ensemble sizes ({a['scale']} scale): {size_text}. {WHY_SIZES[a['study']]}")
    )
    for key, rel in json.loads(a.get("posteriors", "{}")).items():
        blocks.append(("link", (f"posterior {key} (ArviZ netCDF)", rel)))
    blocks.append(
        ("p", f"Made by `{a['command']}` in {float(a['seconds']):.1f} s from `{a['spec_file']}`:")
    )
    blocks.append(("code", a["spec_toml"]))
    return blocks, claims


def _markdown(blocks) -> str:
    out = []
    for kind, value in blocks:
        if kind == "h1":
            out.append(f"# {value}\n")
        elif kind == "h2":
            out.append(f"## {value}\n")
        elif kind == "p":
            out.append(f"{value}\n")
        elif kind == "img":
            out.append(f"![{value}]({value})\n")
        elif kind == "link":
            out.append(f"[{value[0]}]({value[1]})\n")
        elif kind == "claim":
            out.append(f"- {value[1]}\n")
        elif kind == "code":
            out.append(f"```toml\n{value.rstrip()}\n```\n")
        elif kind == "list":
            out.append("\n".join(f"- {v}" for v in value) + "\n")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then render ``**bold**`` and `` `code` ``."""
    parts = html.escape(text).split("**")
    text = "".join(p if i % 2 == 0 else f"<b>{p}</b>" for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(parts))


def _html(blocks, title: str) -> str:
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(value)}</p>")
        elif kind == "img":
            body.append(f'<p><img src="{html.escape(value)}" alt="{html.escape(value)}"></p>')
        elif kind == "link":
            body.append(f'<p><a href="{html.escape(value[1])}">{html.escape(value[0])}</a></p>')
        elif kind == "claim":
            cls = "pass" if value[0] == "PASS" else "fail"
            body.append(f'<p class="{cls}">{_inline(value[1])}</p>')
        elif kind == "code":
            body.append(
                f"<details><summary>spec</summary><pre>{html.escape(value)}</pre></details>"
            )
        elif kind == "list":
            items = "".join(f"<li>{_inline(v)}</li>" for v in value)
            body.append(f"<ul>{items}</ul>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em;line-height:1.4}"
        "img{max-width:100%}.pass{border-left:4px solid #2a2;padding-left:.5em}"
        ".fail{border-left:4px solid #c22;padding-left:.5em}pre{background:#f4f4f4;padding:.5em}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def build_report(out) -> Path:
    """(Re)build ``out/index.md`` and ``out/index.html`` from ``out/results`` only.

    Raises:
        ValueError: ``out`` cannot be written, or holds no results.

    Example:
        >>> build_report("nnqft-report")          # what ``nnqft report nnqft-report`` does
    """
    out = Path(out)
    check_output_path(out / "index.md")
    stores = _order(list((out / "results").glob("*.zarr")))
    if not stores:
        raise ValueError(f"no stored results in {str(out / 'results')!r}; run nnqft reproduce")
    sections, all_claims = [], []
    for path in stores:
        blocks, claims = _blocks_for(load_result(path), out)
        sections += blocks
        all_claims += claims
    n_pass = sum(c["passed"] for c in all_claims)
    title = "nnqft_ppl report: neural networks as field theories"
    head = [
        ("h1", title),
        (
            "p",
            f"{n_pass} of {len(all_claims)} claims pass. Each section below is one spec of the "
            "model zoo (`models/`): its figure, its table (CSV), every claim's measured value "
            "with its uncertainty next to the exact or analytic value, and the rule that decides "
            "PASS/FAIL. Errors are the exact sampling errors where the library has them "
            "(single-hidden-layer nets) and jackknife errors otherwise. Rebuild with "
            "`nnqft report DIR`.",
        ),
        ("list", [("PASS" if c["passed"] else "FAIL") + f": {c['title']}" for c in all_claims]),
    ]
    blocks = head + sections
    _write_atomic(out / "index.md", _markdown(blocks))
    _write_atomic(out / "index.html", _html(blocks, title))
    return out / "index.md"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)
