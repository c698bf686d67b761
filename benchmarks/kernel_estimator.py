"""Error bar per second: the kernel estimator of kappa_4 against the output estimator.

    python benchmarks/kernel_estimator.py [--arch erf|relu|gauss] [--networks 20000]

For each width N (10, 100, 1000) both estimators run on the same ensemble size in one process
(compiled first, then timed): networks per second, the standard error of kappa_4 that one
second of compute buys (the exact per-network sampling error of a diagonal entry divided by
sqrt(networks per second); jackknife errors agree, see tests/test_kernel_estimator.py), their
ratio (goal >= N/2), and the number of networks each needs to resolve kappa_4 at 3 sigma:
``mean |kappa_4| / |G_4,GP|`` above three times its exact background, as in the fall-off study.
"""

import argparse
import time
import warnings

import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import gp_moments
from nnqft_ppl.oracle.exact import exact_kernel_covariance

WIDTHS = (10, 100, 1000)


def networks_per_second(arch, X, width, n, estimator) -> float:
    ensemble = nq.Ensemble(arch, X, width, n, max_order=4, n_batches=100, estimator=estimator)
    nq.accumulate_moments(ensemble, stop=n // 10)  # compile with the timed layout
    start = time.perf_counter()
    nq.accumulate_moments(ensemble)
    return n / (time.perf_counter() - start)


def per_network_errors(arch, X, width) -> dict:
    """Exact per-network sampling sd of kappa_4 entries, ``{estimator: (M,)}``."""
    return {
        "kernel": np.sqrt(np.diag(exact_kernel_covariance(arch, X, width).at(10**9)) * 1e9),
        "outputs": np.sqrt(np.diag(nq.exact_covariance(arch, X, width, 4).values)),
    }


def networks_to_resolve(arch, X, width, sd: np.ndarray) -> float:
    """Networks for ``mean |kappa_4| / |G_4,GP|`` to exceed 3 x its exact background."""
    gp = gp_moments(nq.kernel(arch, X), 4)[4]
    k4 = nq.exact_cumulant(arch, X, width, 4).values
    signal = np.mean(np.abs(k4) / np.abs(gp))
    background = np.mean(sd / np.abs(gp))  # per sqrt(network)
    return 9 * (background / signal) ** 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="erf", choices=["erf", "relu", "gauss"])
    parser.add_argument("--networks", type=int, default=20_000, help="timed networks per run")
    args = parser.parse_args()
    arch = {"erf": nq.ErfNet, "relu": nq.ReLUNet, "gauss": nq.GaussNet}[args.arch]()
    X = nq.paper_inputs(arch)
    print(f"{arch.name}, P = {len(X)}, kappa_4 diagonal entry, {args.networks} networks per run")
    print(f"{'N':>5} {'est.':>8} {'net/s':>9} {'se(1 s)':>10} {'ratio':>7} {'N/2':>5} "
          f"{'n to resolve':>13}")  # fmt: skip
    warnings.simplefilter("ignore", nq.BatchErrorWarning)
    for width in WIDTHS:
        sd = per_network_errors(arch, X, width)
        se_per_second = {}
        for estimator in ("kernel", "outputs"):
            rate = networks_per_second(arch, X, width, args.networks, estimator)
            se_per_second[estimator] = sd[estimator][0] / np.sqrt(rate)
            need = networks_to_resolve(arch, X, width, sd[estimator])
            shown = " " * 7
            if estimator == "outputs":
                shown = f"{se_per_second['outputs'] / se_per_second['kernel']:7.0f}"
            print(f"{width:>5} {estimator:>8} {rate:9.0f} {se_per_second[estimator]:10.3g} "
                  f"{shown} {width // 2:>5} {need:13.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
