"""Time the vertex integrals and the 6-pt prediction against per-entry scipy.integrate.quad.

    python benchmarks/vertex_integrals.py

Workloads (d_in = 1, 6 inputs): (a) all 126 unique 4-pt vertex integrals I_4 at 21 cutoffs;
(b) the full 6-pt prediction G_6 for all 462 tuples (GP part, sum_15 K kappa_4, sextic contact
and the second-order tree). Both after compilation. The baseline does (a) with one
``scipy.integrate.quad`` per (tuple, cutoff), on the same kernel written in NumPy, and reports
the ratio and the largest relative difference.
"""

import time

import numpy as np
from scipy import integrate

import nnqft_ppl as nq
from nnqft_ppl.core.multisets import index_multisets

ARCH = nq.ErfNet()
X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01]) * 50
CUTOFFS = np.geomspace(1.0, 10.0, 21)


def best_of(fn, repeats=5):
    fn()  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def erf_kernel_int(x, y):
    """Erf-net K_int in NumPy (d = 1), the cheapest scalar integrand for the baseline."""
    a = ARCH
    q, qy = a.sb0**2 + a.sw0**2 * x**2, a.sb0**2 + a.sw0**2 * y**2
    c = a.sb0**2 + a.sw0**2 * x * y
    return (2 * a.sw1**2 / np.pi) * np.arcsin(2 * c / np.sqrt((1 + 2 * q) * (1 + 2 * qy)))


def quad_baseline():
    tuples = index_multisets(len(X), 4)
    out = np.empty((len(tuples), len(CUTOFFS)))

    def integrand(y, t):
        return np.prod(erf_kernel_int(X[t], y))

    for i, t in enumerate(tuples):
        for j, L in enumerate(CUTOFFS):
            out[i, j] = integrate.quad(integrand, -L, L, args=(t,), epsrel=1e-10)[0]
    return out


def main():
    t4 = best_of(lambda: nq.vertex_integral(ARCH, X, 4, CUTOFFS))
    fast = nq.vertex_integral(ARCH, X, 4, CUTOFFS).values
    t6 = best_of(lambda: nq.eft_correlators(ARCH, X, quartic=-0.01, sextic=1e-4, cutoff=2.0))
    t0 = time.perf_counter()
    slow = quad_baseline()
    tq = time.perf_counter() - t0
    diff = np.max(np.abs(fast - slow) / np.abs(slow))
    print(f"4-pt vertex integrals, 126 tuples x 21 cutoffs: {t4 * 1e3:8.1f} ms")
    print(f"6-pt prediction, 462 tuples (with 2nd-order tree): {t6 * 1e3:8.1f} ms")
    print(f"per-entry scipy.integrate.quad, 126 x 21:      {tq * 1e3:8.1f} ms")
    print(f"speed-up of the vertex integrals over quad:     {tq / t4:8.0f} x")
    print(f"largest relative difference to quad:            {diff:8.1e}")


if __name__ == "__main__":
    main()
