"""Train an ensemble of networks on sin(3x) and compare it with the neural-tangent-kernel GP.

    python examples/training.py [n_networks]

At infinite width, gradient descent turns the Gaussian process of the untrained networks into
another Gaussian process whose mean and covariance follow from the NNGP kernel K and the neural
tangent kernel Theta (``ntk_predict``). A wide trained ensemble reproduces it; a narrow one is
non-Gaussian, and its connected 4-pt function is measured with the same statistics machinery as
at initialisation.
"""

import sys

import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.ensembles.training import correlator_stats_from_outputs, train_ensemble
from nnqft_ppl.networks.ntk import learning_rate_limit, ntk
from nnqft_ppl.theory.ntk_gp import ntk_predict

n_networks = int(sys.argv[1]) if len(sys.argv) > 1 else 64
arch = nq.ErfNet(sw0=4.0, sb0=1.0, sb1=0.0)
X_train = np.linspace(-1, 1, 8)[:, None]  # (8, 1)
y_train = np.sin(3 * X_train[:, 0])
X_test = np.array([[-0.8], [-0.35], [0.1], [0.55], [0.9]])  # (5, 1)

limit = learning_rate_limit(arch, X_train)  # 2 / lambda_max(Theta_XX)
eta = 0.5 * limit
print(
    f"{arch.name}: NTK on the training set has eigenvalues "
    f"{np.linalg.eigvalsh(ntk(arch, X_train))[[0, -1]].round(4)}, learning rate {eta:.4f} "
    f"(stability limit {limit:.4f})"
)

# 1. a wide ensemble against the infinite-width prediction
width = 2048
f = train_ensemble(
    arch, X_train, y_train, X_test, width, n_networks, 100, eta, seed=0, snapshots=[0, 10, 100]
)  # (step, network, input)
for t in (0, 10, 100):
    mean, cov = ntk_predict(arch, X_train, y_train, X_test, t, eta)
    ft = f.sel(step=t).values
    z = (ft.mean(0) - mean) / (ft.std(0, ddof=1) / np.sqrt(n_networks))
    print(
        f"N={width}, t={t:3d}: mean {ft.mean(0).round(3)} vs NTK-GP {mean.round(3)} "
        f"(max |z| {np.abs(z).max():.1f}); std {ft.std(0).round(3)} vs "
        f"{np.sqrt(np.diag(cov)).round(3)}"
    )
mean, cov = ntk_predict(arch, X_train, y_train, X_test, None, eta)
print(
    f"converged NTK-GP mean {mean.round(3)}, std {np.sqrt(np.diag(cov)).round(4)}, "
    f"target {np.sin(3 * X_test[:, 0]).round(3)}"
)

# 2. a narrow ensemble is non-Gaussian: kappa_4 of the outputs at one input, before and after,
#    in units of the infinite-width trained ensemble's 3 Sigma_t(x, x)^2 (the training study's S)
width, n = 8, 20_000
x = X_test[3:4]
f = train_ensemble(
    arch, X_train, y_train, np.vstack([x, X_train]), width, n, 100, eta, seed=1, snapshots=[0, 100]
)  # (step, network, 1 + 8): the test input, then the training inputs
for t in (0, 100):
    ft = f.sel(step=t).values
    stats = correlator_stats_from_outputs(arch, x, width, ft[:, :1], 4, 100, center="mean")
    k4, se = stats.cumulant(4).item(), stats.stderr(4).item()
    sigma = ntk_predict(arch, X_train, y_train, x, t, eta).covariance.item()
    loss = 0.5 * ((ft[:, 1:] - y_train) ** 2).sum(axis=1)
    print(
        f"N={width}, t={t:3d}: kappa_4(x,x,x,x) = {k4:.2e} +- {se:.1e} at x = {x[0, 0]}; "
        f"S = {k4 / (3 * sigma**2):.3g} +- {se / (3 * sigma**2):.2g}, variance / infinite-width "
        f"{ft[:, 0].var() / sigma:.3g}, median training loss {np.median(loss):.3g}"
    )
exact = nq.exact_cumulant(arch, x, width, order=4).item()
print(f"(exact kappa_4 of the untrained ensemble: {exact:.2e})")
print("The whole study (widths, steps, NTK agreement, couplings): nnqft run training_erf")

# the check this example makes: before training, kappa_4 is the exact oracle's within 4 se
t0 = correlator_stats_from_outputs(
    arch, x, width, f.sel(step=0).values[:, :1], 4, 100, center="mean"
)
z = (t0.cumulant(4).item() - exact) / t0.stderr(4).item()
assert abs(z) < 4, f"untrained kappa_4 disagrees with the exact oracle (z = {z:.2f})"
print(f"check: untrained kappa_4 agrees with the exact oracle (z = {z:.2f})")
