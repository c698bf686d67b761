"""A deep network against the 1/n theory: the 2-pt function with its NLO shift, and n kappa_4.

    python examples/deep_network.py [n_networks]

A depth-3 ReLU net with biases (sw = sqrt 2, sb = 0.5) at three unit-norm inputs in d = 2.
The theory (nnqft_ppl.theory.deep): the GP kernel K, its 1/n shift K1 (``nlo_kernel``) and the
leading 1/n connected 4-pt function (``perturbative_cumulant``, the four-point vertex
recursion). The measurement: ensembles at widths 16, 32, 64 with the kernel estimator (the
last hidden layer's kernel: errors of n kappa_4 that do not grow with n) and the Gram sampler
(pre-activations drawn at the inputs: 3 n instead of n^2 normals per layer). n kappa_4
approaches the recursion like 1/n; the 2-pt function differs from K by K1/n: with the full
covariance of its entries (which move together) the GP alone is rejected and GP + K1/n fits.
"""

import sys

import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.core.linalg import chi_square
from nnqft_ppl.core.multisets import index_multisets

n_networks = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
arch = nq.MLP(depth=3, activation="relu", d_in=2, sw0=2**0.5, sw1=2**0.5, sb0=0.5, sb1=0.5)
X = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # (3, 2)
widths = (16, 32, 64)
pairs = index_multisets(3, 2)  # the 6 unique entries of the 2-pt function

nlo = nq.nlo_kernel(arch, X, widths[0])  # K and K1 (n-independent at equal widths)
A = widths[0] * nq.perturbative_cumulant(arch, X, widths[0]).sel(tuple="0,0,0,0").item()
stats = {
    n: nq.correlators(arch, X, n, n_networks, seed=n, n_batches=50, sampler="gram") for n in widths
}

# 1. the 2-pt function: n (E[f f] - K) against the NLO coefficient K1, pair by pair
print("2-pt function, n (E[f_a f_b] - K_ab) on the pairs", [f"{a}{b}" for a, b in pairs])
print(f"  NLO theory K1:        {np.round(nlo.K1[tuple(pairs.T)], 3)}")
for n, st in stats.items():
    shift = n * (st.moment(2).values - nlo.K[tuple(pairs.T)])
    cov = n**2 * st.covariance(2, kind="moment").values
    gp, nlo_ = chi_square(shift, cov), chi_square(shift - nlo.K1[tuple(pairs.T)], cov)
    err = np.sqrt(np.diag(cov))
    print(
        f"  measured at n = {n:3d}: {np.round(shift, 3)}  +- {np.round(err, 3)}  chi2/dof "
        f"vs GP {gp.value:.1f}/{gp.dof}, vs GP + K1/n {nlo_.value:.1f}/{nlo_.dof}"
    )

# 2. the connected 4-pt function at one input: n kappa_4(0000) -> the recursion like 1/n
print(f"\nn kappa_4(x0, x0, x0, x0): the vertex recursion gives {A:.2f} at every n (order 1/n)")
measured = []
for n, st in stats.items():
    k4 = n * st.cumulant(4).sel(tuple="0,0,0,0").item()
    se = n * st.stderr(4).sel(tuple="0,0,0,0").item()
    measured.append((k4, se))
    excess = n * (k4 - A)
    print(f"  n = {n:3d}: {k4:7.2f} +- {se:4.2f}   n x (measured - recursion) = {excess:6.0f}")
# a weighted fit n kappa_4 = a + b / n over the widths: a is the n -> oo limit
y, se = np.array(measured).T
D = np.stack([np.ones(len(widths)), 1 / np.array(widths)], axis=1) / se[:, None]
(a, b), *_ = np.linalg.lstsq(D, y / se, rcond=None)
a_err = np.sqrt(np.linalg.inv(D.T @ D)[0, 0])
print(f"  fit a + b/n: a = {a:.2f} +- {a_err:.2f} (recursion {A:.2f}), b = {b:.0f}")
