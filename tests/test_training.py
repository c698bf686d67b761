"""Trained ensembles against the infinite-width NTK Gaussian process.

Regression set of the checks: 8 training points of ``y = sin(3x)`` on ``[-1, 1]``, five test
inputs between them, learning rate ``1 / lambda_max(Theta_XX)`` (half the stability limit).
"""

import jax
import numpy as np
import optax
import pytest
import scipy.linalg

import nnqft_ppl as nq
from nnqft_ppl.ensembles.correlators import correlators
from nnqft_ppl.ensembles.sampler import sample_outputs
from nnqft_ppl.ensembles.training import correlator_stats_from_outputs, train_ensemble
from nnqft_ppl.networks.ntk import learning_rate_limit, ntk
from nnqft_ppl.theory.ntk_gp import ntk_linearized_outputs, ntk_predict

Z_MAX = 5.0
X_TRAIN = np.linspace(-1, 1, 8)[:, None]
Y_TRAIN = np.sin(3 * X_TRAIN[:, 0])
X_TEST = np.array([[-0.8], [-0.35], [0.1], [0.55], [0.9]])
#: Erf-net whose tangent kernel on X_TRAIN is well conditioned (lambda_max / lambda_min = 247),
#: so that gradient descent converges in a few thousand steps.
ERF = nq.ErfNet(sw0=4.0, sb0=1.0, sb1=0.0)


def _rate(arch):
    return 0.5 * learning_rate_limit(arch, X_TRAIN)


# --------------------------------------------------------------------------- ntk_predict
@pytest.mark.parametrize("arch", [ERF, nq.MLP(depth=2, activation="relu", sb0=1.0, sb1=0.5)])
def test_untrained_and_converged_limits(arch):
    eta = _rate(arch)
    mean, cov = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, 0, eta)
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_allclose(cov, nq.kernel(arch, X_TEST), rtol=1e-13)

    # Converged: the kernel-regression formulas, written with a plain solve.
    T_XX, T_xX = ntk(arch, X_TRAIN), ntk(arch, X_TEST, X_TRAIN)
    K_XX, K_xX, K_xx = (nq.kernel(arch, *a) for a in ((X_TRAIN,), (X_TEST, X_TRAIN), (X_TEST,)))
    M = np.linalg.solve(T_XX, T_xX.T).T
    mean, cov = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, None, eta)
    np.testing.assert_allclose(mean, M @ Y_TRAIN, rtol=1e-9, atol=1e-12)
    expected = K_xx + M @ K_XX @ M.T - M @ K_xX.T - K_xX @ M.T
    np.testing.assert_allclose(cov, expected, rtol=1e-8, atol=1e-12)

    # At the training inputs the converged ensemble interpolates with no spread.
    mean, cov = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TRAIN, None, eta)
    np.testing.assert_allclose(mean, Y_TRAIN, atol=1e-10)
    np.testing.assert_allclose(cov, 0.0, atol=1e-10)


def test_discrete_form_is_the_linear_recursion():
    """Iterate ``f <- f - eta Theta(., X) (f(X) - y)`` on ``f = f0`` for two fixed initial
    functions: the outputs are ``f0 + T_t (y - f0(X))`` step by step."""
    arch = ERF
    eta = _rate(arch)
    X_all = np.vstack([X_TRAIN, X_TEST])
    Theta = ntk(arch, X_all)[:, :8]
    f0 = np.random.default_rng(0).normal(size=(2, 13))
    f = f0.copy()
    for t in range(1, 31):
        f = f - eta * (f[:, :8] - Y_TRAIN) @ Theta.T
        if t in (1, 7, 30):
            lin = ntk_linearized_outputs(
                arch, X_TRAIN, Y_TRAIN, X_TEST, f0[:, :8], f0[:, 8:], t, eta
            )
            np.testing.assert_allclose(lin, f[:, 8:], rtol=1e-11, atol=1e-13)


def test_discrete_approaches_gradient_flow():
    """At fixed time ``eta t`` the discrete form tends to ``1 - exp(-eta t Theta)`` with an
    O(eta) error; the flow itself is checked against SciPy's matrix exponential."""
    arch, time = ERF, 4.0
    T_XX, T_xX = ntk(arch, X_TRAIN), ntk(arch, X_TEST, X_TRAIN)
    A = np.eye(8) - scipy.linalg.expm(-time * T_XX)
    flow_mean = T_xX @ np.linalg.solve(T_XX, A @ Y_TRAIN)
    flow = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, 400, time / 400, gradient_flow=True)
    np.testing.assert_allclose(flow.mean, flow_mean, rtol=1e-8, atol=1e-10)
    errors = []
    for steps in (100, 200, 400, 800):
        disc = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, steps, time / steps)
        errors.append(
            np.abs(disc.mean - flow.mean).max() + np.abs(disc.covariance - flow.covariance).max()
        )
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.05)  # error proportional to eta
    assert errors[-1] < 1e-3


def test_rank_deficient_kernel_converges_to_the_projection():
    """ReLU without biases in d = 1: Theta_XX has rank 2 (one slope per sign of x); gradient
    descent never moves along the null space, so no eigenvalue is inverted there."""
    arch = nq.ReLUNet()
    mean, cov = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TRAIN, None, _rate(arch))
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
    pos = X_TRAIN[:, 0] > 0
    for side in (pos, ~pos):  # least-squares line through the origin on each side
        x, y = X_TRAIN[side, 0], Y_TRAIN[side]
        np.testing.assert_allclose(mean[side], x * (x @ y) / (x @ x), atol=1e-10)
    np.testing.assert_allclose(cov, 0.0, atol=1e-10)


def test_learning_rate_above_the_limit_is_refused():
    limit = learning_rate_limit(ERF, X_TRAIN)
    for call in (
        lambda: ntk_predict(ERF, X_TRAIN, Y_TRAIN, X_TEST, 10, 1.01 * limit),
        lambda: train_ensemble(ERF, X_TRAIN, Y_TRAIN, X_TEST, 16, 4, 10, 1.01 * limit),
    ):
        with pytest.raises(ValueError, match=r"learning_rate=.*stability limit") as err:
            call()
        assert "\n" not in str(err.value) and f"{limit:.6g}" in str(err.value)


def test_argument_errors():
    with pytest.raises(ValueError, match="steps"):
        ntk_predict(ERF, X_TRAIN, Y_TRAIN, X_TEST, -1, 0.01)
    with pytest.raises(ValueError, match="y_train"):
        ntk_predict(ERF, X_TRAIN, Y_TRAIN[:5], X_TEST, 1, 0.01)
    with pytest.raises(ValueError, match="learning_rate=None"):
        train_ensemble(ERF, X_TRAIN, Y_TRAIN, X_TEST, 16, 4, 1, 0.01, optimizer=optax.sgd(0.01))
    with pytest.raises(ValueError, match="snapshots"):
        train_ensemble(ERF, X_TRAIN, Y_TRAIN, X_TEST, 16, 4, 5, 0.01, snapshots=[6])
    with pytest.raises(ValueError, match="chunk_size"):
        train_ensemble(ERF, X_TRAIN, Y_TRAIN, X_TEST, 16, 4, 5, 0.01, chunk_size=0)


# --------------------------------------------------------------------------- train_ensemble
def test_untrained_outputs_are_the_sampler_bit_for_bit():
    arch, width, n = nq.MLP(depth=2, activation="tanh", sb0=0.5, sb1=0.5), 24, 37
    expected = sample_outputs(arch, X_TEST, width, n, seed=4)
    f = train_ensemble(arch, X_TRAIN, Y_TRAIN, X_TEST, width, n, 0, 0.01, seed=4)
    assert f.dims == ("network", "input") and f.dtype == np.float64
    np.testing.assert_array_equal(f.values, expected)
    with jax.enable_x64(False):  # a float32 user session does not change the result
        f32 = train_ensemble(
            arch, X_TRAIN, Y_TRAIN, X_TEST, width, n, 0, 0.01, seed=4, chunk_size=8
        )
    assert f32.dtype == np.float64
    np.testing.assert_array_equal(f32.values, expected)


def test_chunk_size_and_snapshots_do_not_change_the_networks():
    """Equal to rounding: a different vmapped batch shape may vectorise differently (1 ulp)."""
    arch, width, n = ERF, 32, 21
    runs = [
        train_ensemble(
            arch,
            X_TRAIN,
            Y_TRAIN,
            X_TEST,
            width,
            n,
            30,
            _rate(arch),
            seed=2,
            chunk_size=c,
            snapshots=[0, 5, 30],
        )
        for c in (None, 4)
    ]
    assert runs[0].dims == ("step", "network", "input")
    assert list(runs[0].step.values) == [0, 5, 30]
    for other in runs[1:]:
        np.testing.assert_allclose(other.values, runs[0].values, rtol=1e-13, atol=1e-15)
    single = train_ensemble(arch, X_TRAIN, Y_TRAIN, X_TEST, width, n, 5, _rate(arch), seed=2)
    np.testing.assert_allclose(single.values, runs[0].sel(step=5).values, rtol=1e-13, atol=1e-15)


def test_any_optax_optimizer():
    f = train_ensemble(
        ERF, X_TRAIN, Y_TRAIN, X_TRAIN, 32, 8, 200, None, seed=0, optimizer=optax.adam(1e-2)
    )
    before = sample_outputs(ERF, X_TRAIN, 32, 8, seed=0)
    assert f.attrs["optimizer"] == "custom"
    loss = ((f.values - Y_TRAIN) ** 2).sum(axis=1)
    assert np.all(loss < 0.1 * ((before - Y_TRAIN) ** 2).sum(axis=1))


def test_divergence_is_reported():
    with pytest.warns(RuntimeWarning, match="diverged"):
        train_ensemble(ERF, X_TRAIN, Y_TRAIN, X_TEST, 16, 4, 300, None, optimizer=optax.sgd(5.0))


# --------------------------------------------------------------------------- statistics
def test_correlator_stats_reproduce_the_sampler_statistics():
    arch, width, n, seed = nq.ErfNet(), 6, 1003, 3
    f = sample_outputs(arch, X_TEST, width, n, seed)  # = train_ensemble(..., steps=0)
    ours = correlator_stats_from_outputs(arch, X_TEST, width, f, 4, 10, seed)
    ref = correlators(
        arch,
        X_TEST,
        width,
        n,
        seed,
        max_order=4,
        n_batches=10,
        estimator="outputs",
        check_errors=False,
    )
    for order in (2, 4):
        np.testing.assert_allclose(ours.moment(order), ref.moment(order), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours.stderr(order), ref.stderr(order), rtol=1e-9)
    np.testing.assert_array_equal(ours.sums.counts, ref.sums.counts)


def test_centred_statistics_of_a_trained_ensemble():
    arch, width, n = ERF, 8, 2000
    f = train_ensemble(arch, X_TRAIN, Y_TRAIN, X_TEST, width, n, 50, _rate(arch), seed=1).values
    with pytest.warns(UserWarning, match="center='mean'"):
        correlator_stats_from_outputs(arch, X_TEST, width, f, 4, 20)
    stats = correlator_stats_from_outputs(arch, X_TEST, width, f, 4, 20, center="mean")
    c = f - f.mean(0)
    assert stats.cumulant(4).sel(tuple="3,3,3,3").item() == pytest.approx(
        np.mean(c[:, 3] ** 4) - 3 * np.mean(c[:, 3] ** 2) ** 2, rel=1e-10
    )
    np.testing.assert_allclose(
        stats.moment(2).sel(tuple="1,4").item(), np.mean(c[:, 1] * c[:, 4]), rtol=1e-10
    )
    with pytest.raises(ValueError, match="max_order"):
        correlator_stats_from_outputs(arch, X_TEST, width, f, 6, 20, center="mean")


# --------------------------------------------------------------------------- infinite width
def _agreement(arch, width, n_networks, steps, seed):
    """Plain z-scores of the trained ensemble's mean and covariance against ntk_predict.

    Mean: sample mean over its standard error. Covariance: the centred second moments of
    :func:`correlator_stats_from_outputs` (unique entries) over their batch-jackknife errors.
    """
    eta = _rate(arch)
    snaps = [s for s in steps if s is not None]
    f = train_ensemble(
        arch, X_TRAIN, Y_TRAIN, X_TEST, width, n_networks, max(snaps), eta, seed, snapshots=snaps
    )
    iu = np.triu_indices(len(X_TEST))
    out = {}
    for s in snaps:
        ft = f.sel(step=s).values
        mean, cov = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, s, eta)
        z_mean = (ft.mean(0) - mean) / (ft.std(0, ddof=1) / np.sqrt(n_networks))
        stats = correlator_stats_from_outputs(arch, X_TEST, width, ft, 2, 16, center="mean")
        z_cov = (stats.moment(2).values - cov[iu]) / stats.stderr(2, kind="moment").values
        out[s] = np.abs(z_mean).max(), np.abs(z_cov).max()
        print(f"N={width} t={s}: max |z| mean {out[s][0]:.2f}, covariance {out[s][1]:.2f}")
    return out


def test_trained_ensemble_matches_infinite_width_fast():
    """Erf-net at width 4096, 32 networks, 10 and 100 steps (the O(1/N) bias measured with
    a control variate is ~0.1 standard errors here)."""
    result = _agreement(ERF, 4096, 32, [10, 100], seed=7)
    assert max(max(v) for v in result.values()) < Z_MAX


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch,width,steps",
    [
        (ERF, 1024, [10, 100, 1000, 2500]),
        (ERF, 4096, [10, 100, 1000, 2500]),
        (nq.MLP(depth=2, activation="erf", sw0=4.0, sb0=1.0, sb1=0.0), 1024, [10, 100]),
    ],
    ids=["erf-1024", "erf-4096", "depth2-erf-1024"],
)
def test_trained_ensemble_matches_infinite_width(arch, width, steps):
    """Erf-nets after 10, 100, 1000 and 2500 steps (converged: (1 - eta lambda_min)^2500 = 4e-5,
    and ntk_predict at 2500 steps differs from steps=None by 4e-6, far below the errors), and a
    depth-2 Erf-net after 10 and 100 steps.

    32 networks each. The trained ensemble is narrow (standard deviation 0.005-0.03 at the
    test inputs), and its O(1/N) deviation from the infinite-width prediction is resolved by
    larger ensembles: at width 1024 with 256 networks the largest plain z-scores of the mean are
    7.9, 8.4 and 9.8 after 100, 1000 and 2500 steps (benchmarks/training_width_scaling.py), a
    bias of about half a standard deviation of the ensemble, so |z| ~ 3 is expected from the
    bias alone at 32 networks (measured 4.0 at t = 100 here); at width 4096 it stays below 4
    with 256 networks.
    """
    result = _agreement(arch, width, 32, steps, seed=7)
    assert max(max(v) for v in result.values()) < Z_MAX


def _power_law(widths, values, errors):
    """Weighted least-squares fit of ``log value = a + p log width``: ``(p, error of p,
    chi^2 / dof)``; the error is inflated by sqrt(chi^2 / dof) when that exceeds 1."""
    x, y, s = np.log(widths), np.log(values), errors / values
    A = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
    coef, *_ = np.linalg.lstsq(A, y / s, rcond=None)
    cov = np.linalg.inv(A.T @ A)
    chi2 = float(np.sum(((y - coef[0] - coef[1] * x) / s) ** 2)) / (len(x) - 2)
    return coef[1], np.sqrt(cov[1, 1] * max(chi2, 1.0)), chi2


def _finite_width_deviation(arch, width, n_networks, steps, seed, n_batches=20):
    """RMS over test inputs of ``E[f_t] - mu_t`` and of ``Sigma_t(finite) - Sigma_t``, with
    batch-jackknife errors, measured with each network's infinite-width trajectory as control
    variate (same networks, same expectation as ntk_predict, much smaller noise)."""
    eta = _rate(arch)
    X_all = np.vstack([X_TEST, X_TRAIN])
    f = train_ensemble(
        arch, X_TRAIN, Y_TRAIN, X_all, width, n_networks, steps, eta, seed, snapshots=[0, steps]
    ).values
    f0, ft = f[0], f[1][:, : len(X_TEST)]
    lin = ntk_linearized_outputs(
        arch, X_TRAIN, Y_TRAIN, X_TEST, f0[:, len(X_TEST) :], f0[:, : len(X_TEST)], steps, eta
    )

    def rms(idx):
        d_mean = ft[idx].mean(0) - lin[idx].mean(0)
        d_cov = np.cov(ft[idx].T) - np.cov(lin[idx].T)
        return np.sqrt(np.mean(d_mean**2)), np.sqrt(
            np.mean(d_cov[np.triu_indices(len(X_TEST))] ** 2)
        )

    full = np.array(rms(np.arange(n_networks)))
    batches = np.array_split(np.arange(n_networks), n_batches)
    loo = np.array([rms(np.concatenate(batches[:b] + batches[b + 1 :])) for b in range(n_batches)])
    err = np.sqrt((n_batches - 1) / n_batches * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    return full, err


@pytest.mark.slow
def test_finite_width_deviation_falls_as_a_power_of_the_width():
    """Mean and covariance deviations of trained Erf-nets (100 steps) from ntk_predict at widths
    16 ... 256, 2000 networks each. The perturbative expectation at large width is 1/N; over
    this range the mean deviation falls more slowly (the local exponent steepens with width:
    measured ~-0.5 between 16 and 64, ~-0.9 between 256 and 1024), so the test asserts a
    significant power-law fall-off and prints the fitted exponents."""
    widths = np.array([16, 32, 64, 128, 256])
    dev, err = np.array(
        [_finite_width_deviation(ERF, w, 2000, 100, seed=12) for w in widths]
    ).transpose(1, 0, 2)
    for k, name in enumerate(("mean", "covariance")):
        p, dp, chi2 = _power_law(widths, dev[:, k], err[:, k])
        print(
            f"{name}: deviation ~ N^({p:.3f} +- {dp:.3f}), chi2/dof {chi2:.1f};",
            " ".join(f"{d:.2e}+-{e:.1e}" for d, e in zip(dev[:, k], err[:, k], strict=True)),
        )
        assert p + Z_MAX * dp < 0
