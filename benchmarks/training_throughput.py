"""Training throughput of vmapped ensembles against one network at a time, in one run.

Full-batch gradient descent (``optax.sgd``) on 8 points of ``sin(3x)``, outputs at 5 test inputs,
for a single-hidden-layer net (ReLU by default; Erf with ``--arch erf``). Prints, per width:

* ours: network-steps per second of ``train_ensemble`` (after compilation: the chunk is vmapped,
  the whole step loop runs inside one compiled program);
* loop: network-steps per second of the way a user would train networks one by one: a jitted
  optax step function called from a Python loop over steps and over networks, the same
  optimizer, parametrisation and loss;
* the ratio ours / loop (goal >= 100 at width 64);
* peak memory (max RSS) after training n and 10 n networks: it must not grow (parameters live
  for one chunk at a time; only the outputs, n x 5 floats, are kept).

Usage: ``python benchmarks/training_throughput.py [--widths 64 256] [--arch relu]
[--steps 100] [--networks 4000]``; about a minute with the defaults on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnqft_ppl as nq
from nnqft_ppl.ensembles.training import train_ensemble
from nnqft_ppl.networks.ntk import learning_rate_limit

X_TRAIN = np.linspace(-1, 1, 8)[:, None]
Y_TRAIN = np.sin(3 * X_TRAIN[:, 0])
X_TEST = np.linspace(-0.9, 0.9, 5)[:, None]
ARCHS = {"erf": nq.ErfNet(sw0=4.0, sb1=0.0), "relu": nq.ReLUNet(sw0=2.0, sb0=1.0, sb1=0.0)}


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_ours(arch, width, n, steps, eta, chunk_size=None) -> float:
    args = (arch, X_TRAIN, Y_TRAIN, X_TEST, width)
    train_ensemble(*args, n, steps, eta, chunk_size=chunk_size)  # compile (same chunk layout)
    start = time.perf_counter()
    train_ensemble(*args, n, steps, eta, seed=1, chunk_size=chunk_size)
    return time.perf_counter() - start


def time_loop(arch, width, n, steps, eta) -> float:
    """One network at a time: jitted step, Python loops over steps and networks."""
    optimizer = optax.sgd(eta)
    X, y, Xt = (jnp.asarray(a) for a in (X_TRAIN, Y_TRAIN, X_TEST))

    def loss(theta):
        return 0.5 * jnp.sum((arch.apply(arch.unflatten(theta, width), X) - y) ** 2)

    @jax.jit
    def step(theta, state):
        updates, state = optimizer.update(jax.grad(loss)(theta), state, theta)
        return optax.apply_updates(theta, updates), state

    @jax.jit
    def predict(theta):
        return arch.apply(arch.unflatten(theta, width), Xt)

    def train_one(a):
        theta = jax.random.normal(
            jax.random.fold_in(jax.random.PRNGKey(1), a), (arch.n_parameters(width),)
        )
        state = optimizer.init(theta)
        for _ in range(steps):
            theta, state = step(theta, state)
        return np.asarray(predict(theta))

    train_one(0)  # compile
    start = time.perf_counter()
    outputs = [train_one(a) for a in range(n)]
    elapsed = time.perf_counter() - start
    assert np.all(np.isfinite(np.stack(outputs)))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="relu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--networks", type=int, default=4000, help="ensemble size (ours)")
    parser.add_argument("--loop-networks", type=int, default=20, help="networks in the loop")
    args = parser.parse_args()
    arch = ARCHS[args.arch]
    eta = 0.5 * learning_rate_limit(arch, X_TRAIN)
    print(f"{arch.name}, {args.steps} steps of optax.sgd({eta:.4f}), 8 training points")
    print(f"{'width':>6} {'ours [net-steps/s]':>19} {'loop [net-steps/s]':>19} {'ratio':>7}")
    for width in args.widths:
        n = max(args.networks * 64 // width, 64)
        ours = n * args.steps / time_ours(arch, width, n, args.steps, eta)
        loop = (
            args.loop_networks
            * args.steps
            / time_loop(arch, width, args.loop_networks, args.steps, eta)
        )
        print(f"{width:6d} {ours:19.3g} {loop:19.3g} {ours / loop:7.0f}", flush=True)

    # The same compiled chunk for both sizes, so that only the number of networks changes.
    width, n, chunk = args.widths[0], args.networks, 512
    time_ours(arch, width, n, args.steps, eta, chunk)
    before = max_rss_mb()
    time_ours(arch, width, 10 * n, args.steps, eta, chunk)
    after = max_rss_mb()
    print(
        f"peak memory (max RSS) at width {width}: {before:.0f} MB after {n} networks, "
        f"{after:.0f} MB after {10 * n} (outputs: {10 * n * 5 * 8 / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
