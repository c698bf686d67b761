"""Cost of inference after the statistics pass: NUTS (4 chains x 1000 draws) and SVI on the
field-level likelihood of a 1e6-network ensemble, timed against the statistics pass itself.

Run: ``.venv/bin/python benchmarks/inference_cost.py [--n-networks 1000000]``.
The field likelihood depends on the data only through the streamed moment sums, so the
inference time does not grow with the ensemble (compare --n-networks 10000).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import nnqft_ppl as nq


def main(n_networks: int) -> None:
    X = np.linspace(0.2, 1.2, 6)[:, None]
    arch = nq.ReLUNet()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nq.BatchErrorWarning)
        stats = nq.correlators(arch, X, 20, n_networks, seed=0, max_order=4)
    t_stats = time.perf_counter() - t0
    print(f"statistics pass ({n_networks:.0e} networks): {t_stats:6.2f} s (baseline)")
    for method in (nq.NUTSSettings(num_chains=4, num_samples=1000), nq.SVISettings()):
        for likelihood in ("field", "correlator"):
            t0 = time.perf_counter()
            idata = nq.infer(stats, likelihood=likelihood, method=method, cutoff=2.0)
            dt = time.perf_counter() - t0
            lam, name = idata.posterior["lambda"], idata.attrs["method"]
            print(
                f"{name:4s} {likelihood:10s}: {dt:6.2f} s  ({dt / t_stats:5.2f} x statistics "
                f"pass; sampler alone {idata.attrs['inference_seconds']:.2f} s)  "
                f"lambda = {float(lam.mean()):.5f} +- {float(lam.std()):.5f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-networks", type=int, default=10**6)
    main(parser.parse_args().n_networks)
