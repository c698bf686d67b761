"""How fast trained finite-width ensembles approach the infinite-width NTK prediction.

For each width, trains an ensemble on 8 points of ``sin(3x)`` (learning rate
``1 / lambda_max(Theta_XX)``) and measures the deviation of its mean and covariance at 5 test
inputs from ``ntk_predict``. Each network's infinite-width trajectory from its own initial
function (``ntk_linearized_outputs``) has exactly the ``ntk_predict`` mean and covariance, so the
difference trained - linearised, over the same networks, estimates the finite-width deviation with
far less noise than comparing with the prediction directly. Prints per width and step the RMS
(over inputs / unique covariance entries) of the deviations with batch-jackknife errors, the
largest plain z-score of the ensemble against ``ntk_predict``, and a power-law fit
``deviation ~ N^p`` per step.

Usage: ``python benchmarks/training_width_scaling.py [--arch erf|relu|tanh]
[--widths 16 32 64 128 256] [--networks 2000] [--steps 100]``; about a minute with the defaults.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nnqft_ppl as nq
from nnqft_ppl.ensembles.training import train_ensemble
from nnqft_ppl.networks.ntk import learning_rate_limit
from nnqft_ppl.theory.ntk_gp import ntk_linearized_outputs, ntk_predict

X_TRAIN = np.linspace(-1, 1, 8)[:, None]
Y_TRAIN = np.sin(3 * X_TRAIN[:, 0])
X_TEST = np.array([[-0.8], [-0.35], [0.1], [0.55], [0.9]])
ARCHS = {
    "erf": nq.ErfNet(sw0=4.0, sb0=1.0, sb1=0.0),
    "relu": nq.ReLUNet(sw0=2.0, sb0=1.0, sb1=0.0),
    "tanh": nq.MLP(depth=1, activation="tanh", sw0=2.0, sb0=1.0, sb1=0.0),
}
N_BATCHES = 20


def deviations(ft, lin):
    """RMS mean and covariance deviation of ``ft`` from ``lin`` (same networks), ``(2,)``."""
    iu = np.triu_indices(ft.shape[1])
    d_mean = ft.mean(0) - lin.mean(0)
    d_cov = (np.cov(ft.T) - np.cov(lin.T))[iu]
    return np.array([np.sqrt(np.mean(d_mean**2)), np.sqrt(np.mean(d_cov**2))])


def jackknife(ft, lin):
    batches = np.array_split(np.arange(len(ft)), N_BATCHES)
    loo = np.array(
        [
            deviations(ft[keep], lin[keep])
            for keep in (np.concatenate(batches[:b] + batches[b + 1 :]) for b in range(N_BATCHES))
        ]
    )
    return np.sqrt((N_BATCHES - 1) / N_BATCHES * np.sum((loo - loo.mean(0)) ** 2, axis=0))


def power_law(widths, values, errors):
    """``(p, error of p, chi^2/dof)`` of a weighted fit ``log value = a + p log width``."""
    x, y, s = np.log(widths), np.log(values), errors / values
    A = np.stack([np.ones_like(x), x], axis=1) / s[:, None]
    coef, *_ = np.linalg.lstsq(A, y / s, rcond=None)
    cov = np.linalg.inv(A.T @ A)
    chi2 = float(np.sum(((y - A @ coef * s) / s) ** 2)) / max(len(x) - 2, 1)
    return coef[1], np.sqrt(cov[1, 1] * max(chi2, 1.0)), chi2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="erf")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--networks", type=int, default=2000)
    parser.add_argument("--steps", type=int, nargs="+", default=[100])
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    arch = ARCHS[args.arch]
    eta = 0.5 * learning_rate_limit(arch, X_TRAIN)
    P = len(X_TEST)
    print(f"{arch!r}, learning rate {eta:.4f}, {args.networks} networks per width")
    columns = ("width", 6), ("step", 5), ("mean dev (RMS)", 20), ("cov dev (RMS)", 20)
    print(" ".join(f"{c:>{w}}" for c, w in (*columns, ("max|z|", 7), ("time", 6))))
    table = {s: [] for s in args.steps}
    for width in args.widths:
        start = time.perf_counter()
        f = train_ensemble(
            arch,
            X_TRAIN,
            Y_TRAIN,
            np.vstack([X_TEST, X_TRAIN]),
            width,
            args.networks,
            max(args.steps),
            eta,
            args.seed,
            snapshots=[0, *args.steps],
        )
        elapsed = time.perf_counter() - start
        f0 = f.sel(step=0).values
        for s in args.steps:
            ft = f.sel(step=s).values[:, :P]
            lin = ntk_linearized_outputs(
                arch, X_TRAIN, Y_TRAIN, X_TEST, f0[:, P:], f0[:, :P], s, eta
            )
            dev, err = deviations(ft, lin), jackknife(ft, lin)
            mean, _ = ntk_predict(arch, X_TRAIN, Y_TRAIN, X_TEST, s, eta)
            z = (ft.mean(0) - mean) / (ft.std(0, ddof=1) / np.sqrt(len(ft)))
            table[s].append((dev, err))
            print(
                f"{width:6d} {s:5d} {dev[0]:11.3e} +- {err[0]:.1e} {dev[1]:11.3e} +- {err[1]:.1e}"
                f" {np.abs(z).max():7.1f} {elapsed:5.0f}s",
                flush=True,
            )
    if len(args.widths) > 2:
        for s in args.steps:
            dev = np.array([d for d, _ in table[s]])
            err = np.array([e for _, e in table[s]])
            for k, name in enumerate(("mean", "covariance")):
                p, dp, chi2 = power_law(np.array(args.widths), dev[:, k], err[:, k])
                print(f"step {s}: {name} deviation ~ N^({p:.3f} +- {dp:.3f}), chi2/dof {chi2:.1f}")


if __name__ == "__main__":
    main()
