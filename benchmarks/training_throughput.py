"""Training throughput of vmapped ensembles against one network at a time, in one run.

Full-batch gradient descent (``optax.sgd``) on 8 points of ``sin(3x)``, outputs at 5 test inputs,
for a single-hidden-layer net (ReLU by default; Erf with ``--arch erf``). Per width, network-steps
per second of:

* ``ours``: ``train_ensemble`` (float64; the chunk is vmapped and the whole step loop runs inside
  one compiled program), after compilation; ``ours mixed``: ``precision="mixed"`` (float32
  forward/backward, float64 parameters and updates); ``ours chunk=C``: other chunk sizes;
* ``hand``: the same compiled loop with a hand-written forward/backward pass of the one-hidden-
  layer net in place of ``jax.grad`` of the generic ``apply`` (not in the library: measured here
  to show whether it would pay);
* the dispatch floor: one call of a jitted no-op from Python, the least a per-step loop pays;
* ``loop``: what the issue's goal compares with: a jitted optax step (gradient + update) called
  from a Python loop over steps and over networks, one network at a time, the same optimizer,
  parametrisation and loss; ``loop fused``: one jitted call per network that runs all its steps
  in ``lax.fori_loop`` (the fastest one-network-at-a-time way; no per-step dispatch).

Every variant is timed ``--repeats`` times, interleaved, and the fastest run counts (the machine is
shared: the other runs measure the load). Wall-clock and CPU-time (all threads of this process)
ratios against ``loop`` are printed: the goal is >= 100 at width 64. Then the peak memory (max
RSS) after training n and 10 n networks with the same compiled chunk: it must not grow.

Usage: ``python benchmarks/training_throughput.py [--widths 64 256] [--arch relu] [--steps 100]
[--networks 4000] [--repeats 3]``; about two minutes with the defaults on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from functools import partial

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


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(run) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``run()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def ours(arch, width, n, steps, eta, **options):
    args = (arch, X_TRAIN, Y_TRAIN, X_TEST, width)
    train_ensemble(*args, n, steps, eta, **options)  # compile (same chunk layout)
    return lambda: train_ensemble(*args, n, steps, eta, seed=1, **options)


def hand(arch, width, n, steps, eta, chunk=512):
    """The compiled loop of ``train_ensemble`` with a hand-written gradient (one hidden layer):
    parameters kept as arrays over (network, neuron), the optax update vmapped over networks."""
    d, sw0 = arch.d_in, arch.sw0 / math.sqrt(arch.d_in)
    sw1 = arch.sw1 / math.sqrt(width)
    X, y = jnp.asarray(X_TRAIN), jnp.asarray(Y_TRAIN)
    q = arch.sb0**2 + arch.sw0**2 * jnp.sum(X * X, -1) / d
    optimizer = optax.sgd(eta)

    def grad(p):  # p: b0 (C, N), W0 (C, N, d), W1 (C, N), b1 (C,) in N(0, 1) units
        z = sw0 * jnp.einsum("cnk,pk->cpn", p["W0"], X) + arch.sb0 * p["b0"][:, None, :]
        h, dh = jax.jvp(lambda u: arch.phi(u, q[None, :, None]), (z,), (jnp.ones_like(z),))
        W1 = sw1 * p["W1"]
        r = jnp.einsum("cpn,cn->cp", h, W1) + arch.sb1 * p["b1"][:, None] - y
        delta = r[:, :, None] * W1[:, None, :] * dh
        return {"W1": sw1 * jnp.einsum("cp,cpn->cn", r, h), "b1": arch.sb1 * r.sum(-1),
                "b0": arch.sb0 * delta.sum(1),
                "W0": sw0 * jnp.einsum("cpn,pk->cnk", delta, X)}  # fmt: skip

    @partial(jax.jit, static_argnames="chunk")
    def train(root, start, chunk):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(root, start + jnp.arange(chunk))
        theta = jax.vmap(lambda k: jax.random.normal(k, (arch.n_parameters(width),)))(keys)
        first = theta[:, : (d + 1) * width].reshape(chunk, width, d + 1)
        p = {"b0": first[..., 0], "W0": first[..., 1:],
             "W1": theta[:, (d + 1) * width : -1], "b1": theta[:, -1]}  # fmt: skip
        update = jax.vmap(optimizer.update)

        def step(_, carry):
            u, state = update(grad(carry[0]), carry[1], carry[0])
            return optax.apply_updates(carry[0], u), state

        p, _ = jax.lax.fori_loop(0, steps, step, (p, jax.vmap(optimizer.init)(p)))
        z = sw0 * jnp.einsum("cnk,pk->cpn", p["W0"], jnp.asarray(X_TEST))
        h = arch.phi(z + arch.sb0 * p["b0"][:, None, :], None)
        return jnp.einsum("cpn,cn->cp", h, sw1 * p["W1"]) + arch.sb1 * p["b1"][:, None]

    chunk = min(chunk, n)
    root = jax.random.PRNGKey(1)

    def run():
        with jax.enable_x64(True):
            return [np.asarray(train(root, lo, chunk)) for lo in range(0, n, chunk)]

    run()
    return run


def loop(arch, width, n, steps, eta, fused=False):
    """One network at a time: a jitted step called per step (or, ``fused``, one jitted call
    running all steps), Python loop over networks."""
    optimizer = optax.sgd(eta)
    X, y, Xt = (jnp.asarray(a) for a in (X_TRAIN, Y_TRAIN, X_TEST))

    def loss(theta):
        return 0.5 * jnp.sum((arch.apply(arch.unflatten(theta, width), X) - y) ** 2)

    @jax.jit
    def step(theta, state):
        updates, state = optimizer.update(jax.grad(loss)(theta), state, theta)
        return optax.apply_updates(theta, updates), state

    @jax.jit
    def all_steps(theta, state):
        return jax.lax.fori_loop(0, steps, lambda _, c: step(*c), (theta, state))

    @jax.jit
    def predict(theta):
        return arch.apply(arch.unflatten(theta, width), Xt)

    def train_one(a):
        theta = jax.random.normal(
            jax.random.fold_in(jax.random.PRNGKey(1), a), (arch.n_parameters(width),)
        )
        state = optimizer.init(theta)
        if fused:
            theta, state = all_steps(theta, state)
        else:
            for _ in range(steps):
                theta, state = step(theta, state)
        return np.asarray(predict(theta))

    def run():
        with jax.enable_x64(True):
            out = np.stack([train_one(a) for a in range(n)])
        assert np.all(np.isfinite(out))

    with jax.enable_x64(True):
        train_one(0)  # compile
    return run


def dispatch_floor(repeats: int = 2000) -> float:
    """Seconds per call of a jitted function that does nothing (the per-step floor of any
    Python loop that calls a jitted step)."""
    noop = jax.jit(lambda a: a)
    a = jnp.zeros(8)
    noop(a).block_until_ready()
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            a = noop(a)
        a.block_until_ready()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="relu")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--networks", type=int, default=4000, help="ensemble size (ours)")
    parser.add_argument("--loop-networks", type=int, default=20, help="networks in the loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arch = ARCHS[args.arch]
    eta = 0.5 * learning_rate_limit(arch, X_TRAIN)
    print(f"{arch.name}, {args.steps} steps of optax.sgd({eta:.4f}), 8 training points")
    print(f"dispatch floor: {1e6 * dispatch_floor():.1f} us per call of a jitted no-op")
    print(f"{'width':>5} {'variant':>16} {'net-steps/s':>12} {'ns/(pt*neuron*step)':>20} "
          f"{'ratio wall':>10} {'ratio cpu':>9} {'cpu/wall':>8}")  # fmt: skip
    for width in args.widths:
        n = max(args.networks * 64 // width, 64)
        nl = args.loop_networks
        variants = {  # name: (networks, run)
            "ours": (n, ours(arch, width, n, args.steps, eta)),
            "ours mixed": (n, ours(arch, width, n, args.steps, eta, precision="mixed")),
            "ours chunk=64": (n, ours(arch, width, n, args.steps, eta, chunk_size=64)),
            "ours chunk=4096": (n, ours(arch, width, n, args.steps, eta, chunk_size=4096)),
            "hand": (n, hand(arch, width, n, args.steps, eta)),
            "loop": (nl, loop(arch, width, nl, args.steps, eta)),
            "loop fused": (4 * nl, loop(arch, width, 4 * nl, args.steps, eta, fused=True)),
        }
        best = {k: (np.inf, np.inf) for k in variants}
        for _ in range(args.repeats):  # interleaved: each variant sees the same load
            for name, (_, run) in variants.items():
                wall, cpu = timed(run)
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
        rate = {k: variants[k][0] * args.steps / np.array(best[k]) for k in variants}
        for name in variants:
            wall_rate, cpu_rate = rate[name]
            ns = 1e9 / (wall_rate * 8 * width)
            print(f"{width:5d} {name:>16} {wall_rate:12.3g} {ns:20.2f} "
                  f"{wall_rate / rate['loop'][0]:10.1f} {cpu_rate / rate['loop'][1]:9.1f} "
                  f"{best[name][1] / best[name][0]:8.2f}", flush=True)  # fmt: skip

    # The same compiled chunk for both sizes, so that only the number of networks changes.
    width, n, chunk = args.widths[0], args.networks, 512
    ours(arch, width, n, args.steps, eta, chunk_size=chunk)()
    before = max_rss_mb()
    ours(arch, width, 10 * n, args.steps, eta, chunk_size=chunk)()
    after = max_rss_mb()
    print(
        f"peak memory (max RSS) at width {width}: {before:.0f} MB after {n} networks, "
        f"{after:.0f} MB after {10 * n} (outputs: {10 * n * 5 * 8 / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
