"""Mutation harness: can the fast tests fail? (developer script; not collected by pytest, not CI)

Each entry of :data:`MUTATIONS` is a realistic one-line bug: a file, the exact text to replace
(it must occur exactly once), the replacement, a description and the fast test files that
should catch it. For each bug the script copies the repository to a temporary folder, plants
the bug there, runs

    python -m pytest -m "not slow" -x -q <test files>

with ``PYTHONPATH`` pointing at the copy, and prints a table: bug, caught or not, by which test,
and the first line of the failing assertion (the margin, where the test states one: p-values,
ratios, errors against tolerances).

Usage (from the repository root)::

    python tools/mutations.py                 # every bug
    python tools/mutations.py a d e1          # some of them, by key
    python tools/mutations.py --list          # the bugs, without running anything
    python tools/mutations.py --baseline      # also run each bug's tests on the unmodified copy
    python tools/mutations.py --all-tests     # run the whole fast suite for every bug

A bug that is not caught means a test is missing (or an equivalent mutant: say why in its
description).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    key: str
    file: str
    old: str
    new: str
    description: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "a",
        "nnqft_ppl/oracle/exact.py",
        "    v = arch.sw1**2 / width\n    term_moments",
        "    v = arch.sw1 / width\n    term_moments",
        "exact cumulants: readout weight variance sw1/N instead of sw1^2/N",
        ("tests/test_exact.py",),
    ),
    Mutation(
        "a2",
        "nnqft_ppl/oracle/exact.py",
        "    v = arch.sw1**2 / width\n    u = np.zeros",
        "    v = arch.sw1 / width\n    u = np.zeros",
        "exact single-input moments (E[f^12]): sw1/N instead of sw1^2/N",
        ("tests/test_exact.py",),
    ),
    Mutation(
        "a3",
        "nnqft_ppl/oracle/exact.py",
        "    v = arch.sw1**2 / width\n    out = ",
        "    v = arch.sw1 / width\n    out = ",
        "exact kernel cumulants (kernel-estimator covariance): sw1/N instead of sw1^2/N",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "a4",
        "nnqft_ppl/oracle/exact.py",
        "kappa[2] = kappa[2] + arch.sb1**2",
        "kappa[2] = kappa[2] + arch.sb1",
        "exact 2-pt function: readout bias offset sb1 instead of sb1^2",
        ("tests/test_exact.py",),
    ),
    Mutation(
        "b",
        "nnqft_ppl/inference/likelihoods.py",
        "dist.Normal(loc, 1.0), obs=jnp.asarray(data.white_observed)",
        "dist.Normal(loc, 2.0), obs=jnp.asarray(data.white_observed)",
        "correlator likelihood (NumPyro factor): noise of the whitened data doubled",
        ("tests/test_inference.py",),
    ),
    Mutation(
        "b2",
        "nnqft_ppl/inference/likelihoods.py",
        "return -0.5 * r**2 - 0.5 * math.log(2 * math.pi)",
        "return -0.5 * (r / 2) ** 2 - 0.5 * math.log(2 * math.pi * 4)",
        "correlator likelihood (pointwise log-likelihood): noise doubled",
        ("tests/test_likelihoods.py",),
    ),
    Mutation(
        "b3",
        "nnqft_ppl/inference/likelihoods.py",
        "cov = stats.likelihood_covariance / stats.n_networks",
        "cov = 4 * stats.likelihood_covariance / stats.n_networks",
        "field likelihood (NumPyro factor): covariance of the mean statistic 4x (sd 2x)",
        ("tests/test_inference.py",),
    ),
    Mutation(
        "c",
        "nnqft_ppl/theory/vertex.py",
        "hits = sign * V[:, axis] >= norm",
        "hits = -sign * V[:, axis] >= norm",
        "ReLU vertex rule: kink rays mirrored (panel ends at -u_k instead of u_k)",
        ("tests/test_vertex.py",),
    ),
    Mutation(
        "c2",
        "nnqft_ppl/theory/vertex.py",
        "s_breaks += x_sup[x_sup < box.max()].tolist()",
        "s_breaks += (box.max() - x_sup[x_sup < box.max()]).tolist()",
        "ReLU vertex rule (biases): radial panel ends at L - |x_k| instead of |x_k|",
        ("tests/test_vertex.py",),
    ),
    Mutation(
        "d",
        "nnqft_ppl/oracle/exact.py",
        "np.add.at(A[size], (np.broadcast_to(rows, rank.shape), rank), coef)",
        "A[size][np.broadcast_to(rows, rank.shape), rank] += coef",
        "exact covariance: repeated indices not accumulated (fancy-index += drops repeats)",
        ("tests/test_exact.py", "tests/test_correlators.py"),
    ),
    Mutation(
        "e1",
        "nnqft_ppl/ensembles/correlators.py",
        "self._cache[key] = per_network / self.n_networks",
        "self._cache[key] = per_network / self.n_networks * 2",
        "exact covariance of the outputs estimator in CorrelatorStats 2x too large",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "e2",
        "nnqft_ppl/oracle/exact.py",
        "self.second / (n_networks - 1)",
        "self.second / ((n_networks - 1) / 2)",
        "kernel-estimator exact covariance: second-cumulant term 2x too large",
        ("tests/test_correlators.py", "tests/test_kernel_estimator.py"),
    ),
    Mutation(
        "e3",
        "nnqft_ppl/ensembles/correlators.py",
        "return (B - 1) / B * dev.T @ dev",
        "return dev.T @ dev / B",
        "jackknife covariance: (B - 1)/B factor missing (B - 1 times too small)",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "f",
        "nnqft_ppl/core/multisets.py",
        "(3,): lambda n: n / ((n - 1) * (n - 2)),",
        "(3,): lambda n: n / (2 * (n - 1) * (n - 2)),",
        "k-statistic k3 coefficient halved: kernel-estimator kappa_6 x 0.5",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "f2",
        "nnqft_ppl/ensembles/estimators.py",
        "cumulants[2 * k] = kstat[..., pairing_ranks(n_inputs, 2 * k)].sum(axis=-1)",
        "cumulants[2 * k] = kstat[..., pairing_ranks(n_inputs, 2 * k)].sum(axis=-1) "
        "* (0.5 if k == 3 else 1)",
        "kernel estimator: kappa_6 x 0.5 (a factor 1/2 on the pairing sum of third cumulants)",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "f3",
        "nnqft_ppl/ensembles/estimators.py",
        "        cumulants = cumulants_from_moments(moments, n_inputs, max_order)\n",
        "        cumulants = cumulants_from_moments(moments, n_inputs, max_order)\n"
        "        cumulants = {n: c * (0.5 if n == 6 else 1) for n, c in cumulants.items()}\n",
        "outputs estimator: kappa_6 x 0.5",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "f4",
        "nnqft_ppl/ensembles/estimators.py",
        "        cumulants = cumulants_from_moments(moments, n_inputs, max_order)\n",
        "        cumulants = cumulants_from_moments(moments, n_inputs, max_order)\n"
        "        cumulants = {n: c * (n != 6) for n, c in cumulants.items()}\n",
        "outputs estimator: kappa_6 = 0",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "g",
        "nnqft_ppl/theory/feynman.py",
        "return TREE_FACTOR * half[left, right].sum(axis=-1)",
        "return -TREE_FACTOR * half[left, right].sum(axis=-1)",
        "Feynman rules: sign of the second-order tree",
        ("tests/test_feynman.py",),
    ),
    Mutation(
        "h",
        "nnqft_ppl/networks/kernels.py",
        "C = arch.sb1**2 + arch.sw1**2 * layer_map(arch, C)",
        "C = arch.sb1 + arch.sw1**2 * layer_map(arch, C)",
        "GP kernel: readout bias term sb1 instead of sb1^2",
        ("tests/test_kernels.py",),
    ),
    Mutation(
        "i",
        "nnqft_ppl/networks/architectures.py",
        'params[f"W{self.depth}"] = (self.sw1 / math.sqrt(n)) * theta[offset : offset + n]',
        'params[f"W{self.depth}"] = (self.sw1**2 / math.sqrt(n)) * theta[offset : offset + n]',
        "sampler: readout weights scaled by sw1^2 instead of sw1",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "i2",
        "nnqft_ppl/networks/architectures.py",
        "return self.sb1**2 + (self.sw1**2 / h.shape[-1]) * (h @ h.T)",
        "return self.sb1**2 + (self.sw1 / h.shape[-1]) * (h @ h.T)",
        "kernel estimator's readout kernel G: sw1/N instead of sw1^2/N",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "h2",
        "nnqft_ppl/networks/kernels.py",
        "return kernel_matrix(arch, X, Y) - arch.sb1**2",
        "return kernel_matrix(arch, X, Y) - arch.sb1",
        "interaction propagator K_int = K - sb1 instead of K - sb1^2",
        ("tests/test_vertex.py",),
    ),
    Mutation(
        "h3",
        "nnqft_ppl/networks/architectures.py",
        "return self.sb0**2 + self.sw0**2 * (X @ X.T) / self.d_in",
        "return self.sb0 + self.sw0**2 * (X @ X.T) / self.d_in",
        "first-layer covariance (kernel and oracle, not the sampler): sb0 instead of sb0^2",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "i3",
        "nnqft_ppl/networks/architectures.py",
        'params["W0"] = (self.sw0 / math.sqrt(d)) * first[:, 1:]',
        'params["W0"] = (self.sw0 / d) * first[:, 1:]',
        "sampler: first-layer weights sw0/d instead of sw0/sqrt(d) (same for d = 1)",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "e4",
        "nnqft_ppl/oracle/exact.py",
        "second_pq_rs = second_pq_rs + second[p[:, None], q[None, :]] * "
        "second[q[:, None], p[None, :]]",
        "second_pq_rs = second_pq_rs + 0 * second[p[:, None], q[None, :]] * "
        "second[q[:, None], p[None, :]]",
        "kernel-estimator exact covariance: one of the two Wick terms of cov(k_pq, k_rs) dropped",
        ("tests/test_correlators.py",),
    ),
    Mutation(
        "j",
        "nnqft_ppl/oracle/neuron_quadrature.py",
        "return 2 ** (n / 2) * gamma((r + n) / 2) / gamma(r / 2)",
        "return 2 ** (n / 2) * gamma((r + n) / 2) / gamma(r / 2 + 1)",
        "ReLU single-neuron moments: wrong radial moment normalisation",
        ("tests/test_exact.py",),
    ),
    Mutation(
        "k",
        "nnqft_ppl/core/linalg.py",
        "cov = (Vt.T / s**2) @ Vt / np.outer(col, col)",
        "cov = (Vt.T / s) @ Vt / np.outer(col, col)",
        "least squares: parameter covariance with 1/s instead of 1/s^2",
        ("tests/test_couplings.py",),
    ),
)


def _copy_repository(dest: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", ".hypothesis",
        "*.egg-info", "build", "dist", "nnqft-report", "out",
    )  # fmt: skip
    shutil.copytree(ROOT, dest, ignore=ignore)


def _plant(copy: Path, m: Mutation) -> None:
    path = copy / m.file
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"mutation {m.key}: the old text occurs {count} times in {m.file}")
    path.write_text(text.replace(m.old, m.new))


def _run_tests(copy: Path, tests, timeout: float) -> tuple[int, str, float]:
    # COLUMNS: pytest cuts its summary lines (with the failure message) to the terminal width
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1", COLUMNS="500")
    cmd = [sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider",
           *tests]  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return -1, "timeout", time.perf_counter() - start
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+?)(?: - (.*))?$", re.MULTILINE)


def _verdict(code: int, output: str) -> tuple[str, str, str]:
    """``(caught, by which test, first line of the failure message)``."""
    if code == 0:
        return "NO", "", ""
    if code == -1:
        return "timeout", "", ""
    match = _FAILED.search(output)
    if match is None:
        tail = output.strip().splitlines()[-1:] or [""]
        return ("yes" if code == 1 else f"error {code}"), "", tail[0][:160]
    test = match.group(1).split("::", 1)[-1]
    message = (match.group(2) or "").strip()
    lines = [ln[1:].strip() for ln in output.splitlines() if ln.startswith("E ")]
    lines = [ln for ln in lines if ln]
    if len(message) < 30:  # e.g. a bare "AssertionError:" of numpy.testing: add its details
        details = [ln for ln in lines if "Max relative" in ln or "Mismatched" in ln]
        message = " ".join([message, *(details or lines[:2])]).strip()
    return "yes", test, message[:160]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("keys", nargs="*", help="mutation keys (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="first run each mutation's tests on the unmodified copy",
    )
    parser.add_argument(
        "--all-tests",
        action="store_true",
        help="run the whole fast suite (tests/) for every mutation",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    args = parser.parse_args(argv)  # fmt: skip

    known = {m.key: m for m in MUTATIONS}
    unknown = [k for k in args.keys if k not in known]
    if unknown:
        parser.error(f"unknown mutation keys {unknown}; known: {sorted(known)}")
    chosen = [known[k] for k in args.keys] if args.keys else list(MUTATIONS)
    if args.list:
        for m in chosen:
            print(f"{m.key:4} {m.file}: {m.description}\n     tests: {' '.join(m.tests)}")
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="nnqft-mutations-") as tmp:
        for m in chosen:
            copy = Path(tmp) / m.key
            _copy_repository(copy)
            tests = ("tests",) if args.all_tests else m.tests
            if args.baseline:
                code, out, _ = _run_tests(copy, tests, args.timeout)
                if code != 0:
                    print(f"[{m.key}] baseline FAILS: {_verdict(code, out)}", flush=True)
            _plant(copy, m)
            code, out, seconds = _run_tests(copy, tests, args.timeout)
            caught, test, message = _verdict(code, out)
            rows.append((m, caught, test, message, seconds))
            print(f"[{m.key}] caught={caught} {test} ({seconds:.0f} s) {message}", flush=True)
            shutil.rmtree(copy, ignore_errors=True)

    print()
    print("| bug | description | caught | by test | failure (margin) | s |")
    print("|---|---|---|---|---|---|")
    for m, caught, test, message, seconds in rows:
        message = message.replace("|", "\\|")
        print(f"| {m.key} | {m.description} | {caught} | {test} | {message} | {seconds:.0f} |")
    missed = [m.key for m, caught, *_ in rows if caught != "yes"]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} caught" +
          (f"; NOT caught: {', '.join(missed)}" if missed else ""))  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
