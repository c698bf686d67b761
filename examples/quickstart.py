"""Quick start: ensemble -> correlators -> NUTS posterior of the quartic coupling -> verdict.

Run: ``.venv/bin/python examples/quickstart.py`` (about 20 s on 2 cores).
"""

import numpy as np

import nnqft_ppl as nq

X = np.linspace(0.2, 1.2, 6)[:, None]  # positive inputs for ReLU-net (paper)
arch = nq.ReLUNet()

# 1. a streamed ensemble of 2e5 width-20 networks: moments, connected correlators, errors
stats = nq.correlators(arch, X, width=20, n_networks=200_000, seed=0, max_order=4)

# 2. posterior of a constant quartic coupling lambda (box cutoff L = 2), NUTS with 4 chains
idata = nq.infer(stats, nq.couplings.Constant(), likelihood="correlator", method="nuts",
                 cutoff=2.0, seed=0)  # fmt: skip

# 3. diagnostics: r_hat, ESS, divergences and a verdict; compare with the exact oracle
print(nq.diagnose(idata))
exact = nq.fit_coupling(nq.couplings.Constant(), arch, X, nq.exact_cumulant(arch, X, 20), None, 2.0)
print(f"exact-oracle coupling: {exact.theta[0]:.5f}")

# 4. the check this example makes: the posterior agrees with the exact oracle
mean, sd = float(idata.posterior["lambda"].mean()), float(idata.posterior["lambda"].std())
z = (mean - exact.theta[0]) / sd
print(f"check: posterior {mean:.5f} +- {sd:.2g} vs exact {exact.theta[0]:.5f}: z = {z:.2f}")
assert abs(z) < 4, "the posterior disagrees with the exact oracle"
