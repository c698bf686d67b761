"""RG flow of the quartic coupling with the box cutoff, from the exact finite-width oracle.

    python examples/rg_flow.py [output.png]

ReLU-net (sb0 = sb1 = 0, positive inputs): lambda(L) ~ L^-(d+4) in d = 1 and 2. Gauss-net
(sb0 = 0.5, the paper's inputs around 0): the vertex integrals converge and the flow stops at
the all-space value. Writes the figure to ``rg_flow.png`` (or the given path).
"""

import sys

import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.zoo.plotting import plot_rg_flow

cutoffs = np.geomspace(0.5, 10.0, 21)
flows = {}
for d in (1, 2):
    relu = nq.ReLUNet(d_in=d)
    X = np.linspace(0.2, 1.2, 6)[:, None] * (1 + 0.3 * np.arange(d))  # positive coordinates
    k4 = nq.exact_cumulant(relu, X, width=20, order=4)
    flows[f"ReLU-net d={d}"] = nq.rg_flow(relu, X, k4, cutoffs=cutoffs)

gauss = nq.GaussNet(sb0=0.5)
X = np.array([-0.01, -0.006, -0.002, 0.002, 0.006, 0.01])
k4 = nq.exact_cumulant(gauss, X, width=100, order=4)
flows["Gauss-net"] = nq.rg_flow(gauss, X, k4, cutoffs=cutoffs)

for name, flow in flows.items():
    print(f"{name:14s} {flow.summary()}")
path = sys.argv[1] if len(sys.argv) > 1 else "rg_flow.png"
plot_rg_flow(flows, path)
print(f"figure written to {path}")

# the check this example makes: ReLU-net's coupling runs as L^-(d+4)
for d in (1, 2):
    flow = flows[f"ReLU-net d={d}"]
    assert abs(flow.slope + d + 4) < 0.05, (d, flow.slope)
assert flows["Gauss-net"].stops, "Gauss-net's flow should stop at the all-space coupling"
print("check: ReLU-net slopes -(d + 4) and Gauss-net's flow stops")
