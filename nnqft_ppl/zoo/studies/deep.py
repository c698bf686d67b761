"""Deep-network study: measured finite-width correlators of deep MLPs against the 1/n theory.

For every case of the spec (``[architecture]`` and each ``[[deep.cases]]``), every depth L of
``deep.depths`` and every width n, an ensemble measured with the kernel estimator (the last
hidden layer's kernel: errors of ``n kappa_4`` that do not grow with n; ``ensemble.sampler =
"gram"`` samples it in function space). Each (case, depth, width) gets its own seed, so the
widths are independent and a fit over them may treat their errors as independent.

Summaries (weights fixed by the GP kernel K, so each is one linear combination of the measured
entries with its exact jackknife error ``sqrt(a^T C a)``, C the covariance of all entries):

* ``s4 = mean over the 4-multisets ijkl of n kappa_4(ijkl) / sqrt(K_ii K_jj K_kk K_ll)`` (the
  normalisation by the variances, not by the prediction, keeps tuples whose prediction
  vanishes, e.g. odd nets at orthogonal inputs, from dividing by zero);
* ``t2``: the measured 2-pt shift ``n (E[f_a f_b] - K_ab)`` on the pairs as a multiple of the
  NLO coefficient K1: the generalised least-squares amplitude of ``t2 K1`` with the full
  (jackknife) covariance of the pairs (1 for the recursion, 0 for the GP). The covariance
  matters: the entries move together, so their differences are far more precise than any one
  of them (ReLU's diagonal, exactly K at every width, then acts as a control);
* ``r = mean over inputs a of n kappa_4(aaaa) / (3 K_aa^2)``: n times the normalised diagonal
  vertex of :func:`~nnqft_ppl.theory.deep.vertex_growth`.

Per (case, depth) the weighted fit ``s4(n) = A + B / n`` over the widths (``n kappa_4`` is
``A`` at leading order plus O(1/n)) and likewise ``t2`` and ``r`` (``n (G_2 - K) = K1 +
O(1/n)``); a ``C / n^2`` term joins the fit with 4 widths or more (:func:`fit_inverse_n`).

Claims (``spec.claims`` selects by prefix: ``A``, ``inverse_n``, ``nlo``, ``growth``,
``linear_growth``, ``coupling``):

* ``A_<case>_L<depth>``: the fitted A equals the recursion's ``n kappa_4``
  (:func:`~nnqft_ppl.theory.deep.perturbative_cumulant`), z at 3 sigma; the effect is the
  measured finite-width correction ``s4(n_min) - A_pred`` when it is resolved (agreement must
  tell the leading order from the smallest width's value), else the prediction itself;
* ``inverse_n_<case>_L<depth>``: the residual ``s4(n) - A_pred`` falls as ``n^-1``: once its
  size ``B/n`` (one parameter, the prediction as intercept) is resolved at 3 sigma, a weighted
  fit ``C (n/n_min)^-p`` over all widths (no selection on the noise) gives p = 1 within 3 sigma
  (effect 1: the distance to ``n^0`` and ``n^-2``);
* ``nlo_<case>_L<depth>``: the extrapolated amplitude of the NLO shift is 1
  (:func:`nlo_kernel`); the effect is 1 (the GP predicts 0), UNRESOLVED with the networks it
  would take;
* ``growth_<case>``: ``r`` extrapolated to n -> inf grows from the smallest to the largest
  depth by the recursion's factor (effect: ``ratio - 1``, i.e. no growth); depth 1 needs no
  extrapolation (its kappa_4 is exactly 1/n), growth-only depths are measured at
  ``deep.growth_width`` only;
* ``linear_growth_<case>`` (critical cases only, :func:`is_critical`): the slope of a weighted
  linear fit of the extrapolated r over depth equals the predicted slope (ReLU: exactly 5);
* ``coupling_<case>_L<depth>_N<width>`` (with ``[inference]``, at ``architecture.depth``, widths
  ``inference.width`` and the largest): the posterior (``nq.infer``, correlator likelihood) of
  the constant quartic coupling agrees within 3 posterior sd with the same form fitted to the
  recursion's kappa_4 with the same covariance and cutoff; where that fit itself rejects the
  form (p < 1e-3), the claim is instead that the posterior's diagnosis says it CANNOT describe
  the data.
"""

from __future__ import annotations

import hashlib
import time
from typing import NamedTuple

import numpy as np
import xarray as xr

from ...core.linalg import generalized_least_squares
from ...core.multisets import index_multisets, pair_table
from ...core.progress import progress_bar
from ...inference.diagnostics import REJECT_P  # the threshold of the verdict it checks
from ...theory.couplings import fit_coupling
from ...theory.deep import is_critical, nlo_kernel, perturbative_cumulant, vertex_growth
from ..modeling import infer_spec
from ..results import Claim, StudyResult, fmt, networks_needed, unresolved_claim, z_claim
from ..specs import DeepSpec, deep_architecture, register_study
from .common import cached_correlators, spec_ensemble

__all__ = ["run_deep", "deep_seed", "fit_inverse_n", "weights"]


def deep_seed(seed: int, label: str, depth: int, width: int) -> int:
    """A seed of its own for each (case, depth, width): independent ensembles across widths."""
    text = f"{seed}/{label}/{depth}/{width}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


class Weights(NamedTuple):
    """Fixed linear summaries of the measured entries (module docstring).

    Attributes:
        s4: ``(M4,)`` weights of ``s4`` on ``kappa_4`` (times n).
        r: ``(M4,)`` weights of ``r`` on ``kappa_4`` (times n).
        K: ``(M2,)`` the GP kernel on the pairs.
        K1: ``(M2,)`` the NLO coefficient on the pairs (the shape ``t2`` measures).
    """

    s4: np.ndarray
    r: np.ndarray
    K: np.ndarray
    K1: np.ndarray


def weights(K: np.ndarray, K1: np.ndarray) -> Weights:
    """The summaries' weights from the GP kernel ``K (P, P)`` and NLO coefficient ``K1 (P, P)``."""
    P = K.shape[0]
    d = np.diag(K)
    T = index_multisets(P, 4)
    s4 = 1 / (np.sqrt(np.prod(d[T], axis=1)) * len(T))
    diag = np.all(T == T[:, :1], axis=1)
    r = np.where(diag, 1 / (3 * d[T[:, 0]] ** 2 * P), 0.0)
    k1 = pair_table(K1)
    k1 = np.where(np.abs(k1) > 1e-12 * max(np.abs(k1).max(), 1e-300), k1, 0.0)
    return Weights(s4, r, pair_table(K), k1)


def fit_inverse_n(widths, y, err, order: int | None = None) -> dict:
    """Weighted fit ``y = A + B / n + C / n^2`` over independent widths.

    The ``C / n^2`` term is fitted when there are 4 widths or more (``order=None``; ``order``
    1 or 2 forces it): at the small widths of deep nets ``B / (A n)`` reaches ~0.7 (ReLU,
    depth 5, n = 16), so a straight line in 1/n would bias A by the next order. Returns A, B,
    C (NaN when not fitted) with their errors, chi-square, dof and p-value, and ``A_lin``,
    ``B_lin`` (errors ``*_lin_err``): the two-parameter fit ``A + B / n`` on the same data.
    """
    n = np.asarray(widths, dtype=np.float64)
    cov = np.diag(np.asarray(err, dtype=np.float64) ** 2)
    order = order or (2 if len(n) >= 4 else 1)
    fits = {}
    for k in {1, order}:
        D = np.stack([n**-i for i in range(k + 1)], axis=1)
        fits[k] = generalized_least_squares(D, y, cov)
    ls, lin = fits[order], fits[1]
    th, se = np.append(ls.theta, np.nan)[:3], np.append(ls.stderr, np.nan)[:3]
    return {
        "A": th[0], "A_err": se[0], "B": th[1], "B_err": se[1], "C": th[2], "C_err": se[2],
        "chi2": ls.chi_square.value, "dof": ls.chi_square.dof, "p": ls.chi_square.p_value,
        "A_lin": lin.theta[0], "A_lin_err": lin.stderr[0], "B_lin": lin.theta[1],
        "B_lin_err": lin.stderr[1],
    }  # fmt: skip


class _Case(NamedTuple):
    label: str
    arch: object  # the case's MLP at the spec's depth
    critical: bool


def _cases(spec, deep: DeepSpec) -> list[_Case]:
    labels = [deep.label] + [c.label for c in deep.cases]
    out = []
    for label in labels:
        arch = deep_architecture(spec, label)
        out.append(_Case(label, arch, is_critical(arch)))
    return out


class _Theory(NamedTuple):
    w: Weights
    s4: float  # A_pred: the recursion's s4 (n-independent at equal widths)
    r: float
    t2: float


def _theory(arch, X) -> _Theory:
    """The recursion's summaries of ``arch`` (equal widths: ``n kappa_4`` and ``K1`` do not
    depend on n, so one width serves)."""
    nlo = nlo_kernel(arch, X, 1)
    w = weights(nlo.K, nlo.K1)
    k4 = perturbative_cumulant(arch, X, 1).values  # n kappa_4 at n = 1
    t2 = 1.0 if np.any(w.K1) else np.nan  # t2 is the amplitude of the predicted shape
    return _Theory(w, float(w.s4 @ k4), float(w.r @ k4), t2)


def _measure(stats, w: Weights) -> dict:
    """The summaries of one ensemble with their jackknife errors."""
    n = stats.width
    k4 = stats.cumulant(4, "kernel").values
    C4 = stats.covariance(4, estimator="kernel").values
    shift = stats.moment(2, "kernel").values - w.K
    C2 = stats.covariance(2, kind="moment", estimator="kernel").values
    out = {"n_networks": stats.n_networks}
    for name, a in (("s4", w.s4), ("r", w.r)):
        out[name] = float(n * a @ k4)
        out[f"{name}_err"] = float(n * np.sqrt(max(a @ C4 @ a, 0.0)))
    out["t2"] = out["t2_err"] = np.nan
    if np.any(w.K1):  # n shift = t2 K1: GLS on the resolved directions of the covariance
        fit = generalized_least_squares(w.K1[:, None], n * shift, n**2 * C2)
        out["t2"], out["t2_err"] = float(fit.theta[0]), float(fit.stderr[0])
    return out


@register_study("deep")
def run_deep(spec, cache=None, progress: bool = False) -> StudyResult:
    """Run a ``study = "deep"`` spec (module docstring): tables ``deep`` (over case, depth,
    width), ``deep_growth`` (case, depth) and ``deep_couplings`` (width), and the claims."""
    deep = spec.deep or DeepSpec()
    arch0 = spec.architecture_for()
    X = spec.inputs_for(arch0)
    sizes = spec.ensemble_sizes()
    widths = list(sizes)
    growth_width = deep.growth_width or widths[-1]
    cases = _cases(spec, deep)
    growth_depths = deep.depth_list()
    jobs = [(c, L, N) for c in cases for L in deep.depths for N in widths]
    jobs += [(c, L, growth_width) for c in cases for L in growth_depths if L not in deep.depths]
    measured, theory, stats_kept = {}, {}, {}
    start = time.perf_counter()
    with progress_bar(len(jobs), f"{spec.name}: ensembles", progress) as advance:
        for case, L, N in jobs:
            arch = deep_architecture(spec, case.label, L)
            if (case.label, L) not in theory:
                theory[case.label, L] = _theory(arch, X)
            seed = deep_seed(spec.ensemble.seed, case.label, L, N)
            ensemble = spec_ensemble(spec, arch, X, N, sizes[N], seed, max_order=4)
            stats = cached_correlators(ensemble, cache)
            measured[case.label, L, N] = _measure(stats, theory[case.label, L].w)
            if L == spec.architecture.depth and case.label == deep.label:
                stats_kept[N] = stats
            advance(1)
    seconds = time.perf_counter() - start
    labels = [c.label for c in cases]
    table = _width_table(labels, deep.depths, widths, measured, theory, arch0, X, seconds)
    growth = _growth_table(cases, growth_depths, growth_width, measured, table, spec, X)
    result = StudyResult(tables={"deep": table, "deep_growth": growth})
    for case in cases:
        for L in deep.depths:
            t = table.sel(case=case.label, depth=L)
            result.claims += [
                _a_claim(case, L, t, widths),
                _inverse_n_claim(case, L, t),
                _nlo_claim(case, L, t),
            ]
        g = growth.sel(case=case.label)
        result.claims.append(_growth_claim(case, g))
        if case.critical:
            result.claims.append(_linear_growth_claim(case, g))
    if spec.inference is not None:
        _couplings(spec, cases[0], X, stats_kept, result)
    if spec.claims:  # claim keys are "<kind>_<case>...": select by kind
        kinds = tuple(f"{k}_" for k in spec.claims)
        result.claims = [c for c in result.claims if c.key.startswith(kinds)]
    result.notes.append(_fit_note(table))
    return result


# --------------------------------------------------------------------------- tables
_FIT_KEYS = tuple(fit_inverse_n([1, 2], [0.0, 1.0], [1.0, 1.0]))


def _width_table(labels, depths, widths, measured, theory, arch0, X, seconds) -> xr.Dataset:
    """Measured summaries over (case, depth, width), predictions and fits over (case, depth)."""
    names = ("s4", "s4_err", "t2", "t2_err", "r", "r_err", "n_networks")
    data = {
        k: (("case", "depth", "width"),
            np.array([[[measured[c, L, N][k] for N in widths] for L in depths] for c in labels],
                     dtype=float))
        for k in names
    }  # fmt: skip
    for k in ("s4", "t2", "r"):
        data[f"{k}_pred"] = (
            ("case", "depth"),
            np.array([[getattr(theory[c, L], k) for L in depths] for c in labels]),
        )
    fits = {}
    for c in labels:
        for L in depths:
            m = [measured[c, L, N] for N in widths]
            fits[c, L] = {}
            for name, prefix in (("s4", ""), ("t2", "nlo_"), ("r", "r_")):
                err = [x[f"{name}_err"] for x in m]
                f = (
                    fit_inverse_n(widths, [x[name] for x in m], err)
                    if np.all(np.array(err) > 0)
                    else dict.fromkeys(_FIT_KEYS, np.nan)
                )  # t2 without an NLO shift (NaN errors): no data
                fits[c, L] |= {f"{prefix}{k}": v for k, v in f.items()}
    for k in fits[labels[0], depths[0]]:
        data[k] = (("case", "depth"), np.array([[fits[c, L][k] for L in depths] for c in labels]))
    return xr.Dataset(
        data,
        coords={"case": labels, "depth": list(depths), "width": list(widths)},
        attrs={"architecture": arch0.name, "inputs": X.ravel().tolist(), "d_in": X.shape[1],
               "seconds": seconds,
               "s4": "mean over 4-multisets of n kappa_4 / sqrt(K_ii K_jj K_kk K_ll)",
               "t2": "GLS amplitude of K1 in n (E[f f] - K) on the pairs (recursion 1, GP 0)",
               "r": "mean over inputs of n kappa_4(aaaa) / (3 K_aa^2)",
               "fit": "y = A + B/n + C/n^2 per summary (C with >= 4 widths; s4: A, B, C; t2: "
                      "nlo_A, ...; r: r_A, ...), weighted, independent widths; *_lin: A + B/n"},
    )  # fmt: skip


def _growth_table(cases, growth_depths, width, measured, table, spec, X) -> xr.Dataset:
    """``r`` over (case, depth): measured at ``width``, extrapolated to n -> inf where the
    depth was measured at every width (``r_A`` of the width table; depth 1 has no 1/n
    correction, its value at any width is the limit), and the recursion's."""
    depths = sorted(set(growth_depths) | set(table.depth.values.tolist()))

    def at_width(key):
        return np.array([[measured[c.label, L, width][key] for L in depths] for c in cases])

    r_inf = np.full((len(cases), len(depths)), np.nan)
    r_inf_err = np.full_like(r_inf, np.nan)
    for i, c in enumerate(cases):
        for j, L in enumerate(depths):
            if L in table.depth.values:
                t = table.sel(case=c.label, depth=L)
                r_inf[i, j], r_inf_err[i, j] = float(t.r_A), float(t.r_A_err)
            elif L == 1:  # one hidden layer: kappa_4 is exactly 1/n
                r_inf[i, j] = measured[c.label, L, width]["r"]
                r_inf_err[i, j] = measured[c.label, L, width]["r_err"]
    # vertex_growth is V_(aa)(aa) / (n K_aa^2) per input: n times its mean over inputs is r
    pred = [width * vertex_growth(c.arch, X, depths, width).mean("input").values for c in cases]
    return xr.Dataset(
        {
            "r": (("case", "depth"), at_width("r")),
            "r_err": (("case", "depth"), at_width("r_err")),
            "r_inf": (("case", "depth"), r_inf),
            "r_inf_err": (("case", "depth"), r_inf_err),
            "r_pred": (("case", "depth"), np.array(pred)),
            "n_networks": (("case", "depth"), at_width("n_networks")),
            "critical": ("case", np.array([c.critical for c in cases])),
            "scales": ("case", [f"sw1={c.arch.sw1:.4g}, sb1={c.arch.sb1:.4g}" for c in cases]),
        },
        coords={"case": [c.label for c in cases], "depth": depths},
        attrs={"width": width, "activation": spec.architecture.activation or "",
               "r": "mean over inputs of n kappa_4(aaaa) / (3 K_aa^2) (n x vertex_growth)",
               "r_inf": "r extrapolated to n -> inf (fit r = A + B/n over the widths)"},
    )  # fmt: skip


def _fit_note(table: xr.Dataset) -> str:
    parts = []
    for c in table.case.values:
        for L in table.depth.values:
            t = table.sel(case=c, depth=L)
            keys = ("A", "B", "C", "A_lin", "B_lin")
            v = {k: fmt(float(t[k]), float(t[f"{k}_err"])) for k in keys}
            parts.append(
                f"{c} L={L}: A = {v['A']} (recursion {float(t.s4_pred):.4g}), B = {v['B']}, "
                f"C = {v['C']}; A + B/n alone: A = {v['A_lin']}, B = {v['B_lin']}"
            )
    model = _model(table.isel(case=0, depth=0))
    return f"Fits s4(n) = {model} (s4: {table.attrs['s4']}): " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- claims
def _a_claim(case: _Case, L: int, t: xr.Dataset, widths) -> Claim:
    A, A_err, B, B_err = (float(t[k]) for k in ("A", "A_err", "B", "B_err"))
    pred = float(t.s4_pred)
    first = t.isel(width=0)
    gap, gap_err = float(first.s4) - pred, float(first.s4_err)
    if abs(gap) > 3 * gap_err:  # the data resolve the finite-width correction
        effect = gap
        label = f"the measured finite-width correction at n = {int(first.width)}"
    else:
        effect, label = pred, "the prediction (the GP has none)"
    p = f"p = {float(t.p):.2g}" if np.isfinite(float(t.p)) else "no test"
    return z_claim(
        f"A_{case.label}_L{L}",
        f"{case.arch.activation} {case.label}, depth {L}: n kappa_4 extrapolated to n -> inf "
        "equals the 1/n vertex recursion",
        A, A_err, pred, "recursion (perturbative_cumulant)",
        effect=effect, effect_label=label, n_networks=float(t.n_networks.min()),
        details=f"s4 = mean of n kappa_4 / sqrt(K K K K) over the tuples, fitted {_model(t)} "
        f"over n = {list(widths)}: B = {fmt(B, B_err)}, C = {fmt(float(t.C), float(t.C_err))}; "
        f"chi2 = {float(t.chi2):.3g} on {int(t.dof)} dof ({p}); A + B/n alone: A = "
        f"{fmt(float(t.A_lin), float(t.A_lin_err))}, B = {fmt(float(t.B_lin), float(t.B_lin_err))}",
    )  # fmt: skip


def _model(t: xr.Dataset, prefix: str = "") -> str:
    return "A + B/n + C/n^2" if np.isfinite(float(t[f"{prefix}C"])) else "A + B/n"


def fit_power(widths, y, err) -> tuple[float, float, float]:
    """Weighted fit ``y = C (n / n_min)^-p`` over all widths (unresolved ones included: no
    selection on the noise): ``(p, its error, chi2)``; NaNs when the fit does not converge."""
    from scipy.optimize import curve_fit

    n = np.asarray(widths, dtype=np.float64)
    y, err = np.asarray(y, dtype=np.float64), np.asarray(err, dtype=np.float64)
    x = n / n.min()

    def model(x, C, p):
        return C * x ** (-p)

    try:
        (C, p), cov = curve_fit(model, x, y, p0=(y[0], 1.0), sigma=err, absolute_sigma=True)
    except (RuntimeError, ValueError):
        return np.nan, np.nan, np.nan
    chi2 = float(np.sum(((y - model(x, C, p)) / err) ** 2))
    return float(p), float(np.sqrt(cov[1, 1])), chi2


def _inverse_n_claim(case: _Case, L: int, t: xr.Dataset) -> Claim:
    key = f"inverse_n_{case.label}_L{L}"
    title = (f"{case.arch.activation} {case.label}, depth {L}: the residual n kappa_4 - "
             "recursion falls as 1/n")  # fmt: skip
    resid, err, n = (t.s4 - t.s4_pred).values, t.s4_err.values, t.width.values
    N = float(t.n_networks.min())
    # the residual's size with the prediction as the intercept: B1 / n, one parameter
    wts = 1 / (err**2 * n**2)
    B1 = float(np.sum(wts * n * resid) / np.sum(wts))
    B1_err = float(1 / np.sqrt(np.sum(wts)))
    rule = "the residual s4 - A_pred is resolved (|B| > 3 sigma), and its fitted power is 1 " \
           "within 3 sigma"  # fmt: skip
    if not abs(B1) > 3 * B1_err:
        need = networks_needed(N, B1_err, B1) if abs(B1) > B1_err else np.nan
        return unresolved_claim(key, title, rule, f"the residual B/n is not resolved: B = "
                                f"{fmt(B1, B1_err)} (recursion as intercept)", need)  # fmt: skip
    p, p_err, chi2 = fit_power(n, resid, err)
    if not p_err < 1:  # the residual is resolved at too few widths to fix its power
        k = int(np.sum(np.abs(resid) > 3 * err))  # (a fitted p +- p_err would be meaningless)
        return unresolved_claim(key, title, rule, f"B = {fmt(B1, B1_err)} with p = 1, but the "
                                f"power is not determined: the residual is resolved at {k} of "
                                f"{len(n)} widths")  # fmt: skip
    return z_claim(
        key, title, p, p_err, 1.0, "1/n (the next order of the expansion)",
        effect=1.0, effect_label="the distance to the neighbouring powers (n^0, n^-2)",
        n_networks=N,
        details=f"weighted fit of s4 - A_pred = C (n/n_min)^-p over the widths "
        f"{n.tolist()}: chi2 = {chi2:.3g} on {len(n) - 2} dof; with p = 1: B = {fmt(B1, B1_err)}",
    )  # fmt: skip


def _nlo_claim(case: _Case, L: int, t: xr.Dataset) -> Claim:
    key = f"nlo_{case.label}_L{L}"
    title = (f"{case.arch.activation} {case.label}, depth {L}: the 2-pt function is the GP kernel "
             "plus the NLO shift K1/n")  # fmt: skip
    if not np.isfinite(float(t.nlo_A)):
        return unresolved_claim(key, title, "|z| < 3", "no NLO shift predicted (K1 = 0)")
    per_width = ", ".join(
        f"n={int(n)}: {fmt(float(a), float(e))}"
        for n, a, e in zip(t.width.values, t.t2.values, t.t2_err.values, strict=True)
    )
    return z_claim(
        key, title, float(t.nlo_A), float(t.nlo_A_err), 1.0, "NLO kernel (amplitude 1)",
        effect=1.0, effect_label="the NLO shift (the GP: amplitude 0)",
        n_networks=float(t.n_networks.min()),
        details=f"t2 = amplitude of K1 in n (E[f f] - K) (GLS over the pairs with their "
        f"covariance): {per_width}; fitted {_model(t, 'nlo_')} over the widths, B = "
        f"{fmt(float(t.nlo_B), float(t.nlo_B_err))}, chi2 = {float(t.nlo_chi2):.3g} on "
        f"{int(t.nlo_dof)} dof",
    )  # fmt: skip


def _extrapolated(g: xr.Dataset) -> xr.Dataset:
    """The depths of the growth table with an n -> inf value."""
    return g.where(np.isfinite(g.r_inf), drop=True)


def _growth_claim(case: _Case, g: xr.Dataset) -> Claim:
    x = _extrapolated(g)
    r, err, pred = x.r_inf.values, x.r_inf_err.values, x.r_pred.values
    L1, L2 = int(x.depth[0]), int(x.depth[-1])
    ratio = r[-1] / r[0]
    ratio_err = abs(ratio) * np.hypot(err[-1] / r[-1], err[0] / r[0])
    ratio_pred = pred[-1] / pred[0]
    state = "at criticality" if case.critical else "away from criticality"
    at_n = g.sel(depth=L2)
    return z_claim(
        f"growth_{case.label}",
        f"{case.arch.activation} {case.label} ({state}): the four-point vertex grows from depth "
        f"{L1} to {L2} as the recursion predicts",
        float(ratio), float(ratio_err), float(ratio_pred), "vertex_growth ratio",
        effect=float(ratio_pred - 1), effect_label="the growth itself (no growth: ratio 1)",
        n_networks=float(g.n_networks.min()),
        details=f"r = n kappa_4(aaaa) / (3 K_aa^2) extrapolated to n -> inf: "
        f"{np.round(r, 3).tolist()} +- {np.round(err, 3).tolist()}, predicted "
        f"{np.round(pred, 3).tolist()} over depths {x.depth.values.astype(int).tolist()}; at fixed "
        f"n = {g.attrs['width']}, depth {L2}: {fmt(float(at_n.r), float(at_n.r_err))} (the O(1/n) "
        "correction grows with depth)",
    )  # fmt: skip


def _linear_growth_claim(case: _Case, g: xr.Dataset) -> Claim:
    x = _extrapolated(g)
    L = x.depth.values.astype(float)
    key = f"linear_growth_{case.label}"
    title = (f"{case.arch.activation} {case.label} (critical): the vertex grows linearly with "
             "depth, at the predicted slope")  # fmt: skip
    if len(L) < 3:
        return unresolved_claim(key, title, "|z| < 3 and a linear fit over >= 3 depths",
                                f"only {len(L)} depth(s) extrapolated to n -> inf")  # fmt: skip
    D = np.stack([np.ones_like(L), L], axis=1)
    fit = generalized_least_squares(D, x.r_inf.values, np.diag(x.r_inf_err.values**2))
    slope_pred = float(np.polyfit(L, x.r_pred.values, 1)[0])
    return z_claim(
        key, title, float(fit.theta[1]), float(fit.stderr[1]), slope_pred,
        "slope of vertex_growth", effect=slope_pred, effect_label="the slope (no growth: 0)",
        n_networks=float(g.n_networks.min()),
        details=f"weighted linear fit of r (extrapolated to n -> inf) over depths "
        f"{L.astype(int).tolist()}: chi2 = {fit.chi_square.value:.3g} on {fit.chi_square.dof} "
        f"dof (p = {fit.chi_square.p_value:.2g})",
    )  # fmt: skip


# --------------------------------------------------------------------------- couplings
def _couplings(spec, case: _Case, X, stats_kept: dict, result: StudyResult) -> None:
    """Posteriors of the spec's coupling form at ``inference.width`` and the largest width."""
    from ...inference.diagnostics import diagnose

    widths = sorted({spec.inference.width, max(stats_kept)})
    if len(widths) < 2:
        widths = sorted(stats_kept)[-2:]
    form, cutoff, L = spec.coupling_form(), spec.theory.cutoff, spec.architecture.depth
    rows = []
    for N in widths:
        stats = stats_kept[N]
        arch = stats.arch
        idata = infer_spec(spec, stats)
        result.posteriors[f"{case.label}_L{L}_N{N}"] = idata
        name = form.names[0]
        draws = idata.posterior[name].values
        mean, sd = float(draws.mean()), float(draws.std())
        cov = stats.covariance(4, estimator="kernel").values
        pred = fit_coupling(form, arch, X, perturbative_cumulant(arch, X, N), cov, cutoff)
        verdict = diagnose(idata).verdict
        rows.append({"mean": mean, "sd": sd, "predicted": float(pred.theta[0]),
                     "predicted_chi2": pred.chi2, "predicted_dof": pred.dof,
                     "predicted_p": pred.p_value, "cannot_describe": "CANNOT describe" in verdict,
                     "n_networks": stats.n_networks})  # fmt: skip
        result.claims.append(_coupling_claim(case, L, N, rows[-1], pred, verdict, name))
    result.tables["deep_couplings"] = xr.Dataset(
        {k: ("width", np.array([r[k] for r in rows])) for k in rows[0]},
        coords={"width": widths},
        attrs={"case": case.label, "depth": L, "form": type(form).__name__,
               "cutoff": str(cutoff or "all space"), "method": spec.inference.method,
               "likelihood": spec.inference.likelihoods[0]},
    )  # fmt: skip


def _coupling_claim(case, L, N, row, pred, verdict: str, name: str) -> Claim:
    key = f"coupling_{case.label}_L{L}_N{N}"
    z = (row["mean"] - row["predicted"]) / row["sd"]
    gof = (f"the recursion's kappa_4 under the form: chi2 = {pred.chi2:.3g} on {pred.dof} dof "
           f"(p = {pred.p_value:.2g}); posterior vs the form fitted to the recursion: z = {z:.2f}; "
           f"n x coupling = {N * row['mean']:.4g}")  # fmt: skip
    said = next((line for line in verdict.splitlines() if f"{name} =" in line or "CANNOT" in line),
                verdict.splitlines()[-1])  # fmt: skip
    if pred.dof > 0 and pred.p_value < REJECT_P:
        return Claim(
            key,
            f"{case.arch.activation} {case.label}, depth {L}, n = {N}: the recursion's kappa_4 "
            f"rejects a constant coupling, and the posterior's diagnosis says so",
            row["mean"], row["sd"], row["predicted"], "form fitted to the recursion",
            f"recursion's chi-square p < {REJECT_P:g} => the diagnosis says CANNOT describe",
            "PASS" if row["cannot_describe"] else "FAIL", z=float(z),
            details=f"{gof}; diagnosis: {said.split('. The posterior')[0]}",
        )  # fmt: skip
    return z_claim(
        key,
        f"{case.arch.activation} {case.label}, depth {L}, n = {N}: the posterior of the constant "
        "quartic coupling agrees with the coupling of the recursion's kappa_4",
        row["mean"], row["sd"], row["predicted"],
        "same form fitted to perturbative_cumulant (same covariance, cutoff)",
        effect=row["predicted"], effect_label="the coupling itself", n_networks=row["n_networks"],
        details=f"{gof}; diagnosis: {said}",
    )  # fmt: skip
