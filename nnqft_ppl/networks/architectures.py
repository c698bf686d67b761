"""Network architectures: one frozen description gives the sampler, forward pass and model.

``MLP(depth, activation)`` is the general fully connected network with scalar output

    z^0 = W^0 x + b^0,  z^l = W^l phi(z^(l-1)) + b^l,  f = W^L phi(z^(L-1)) + b^L   (L = depth)

with independent Gaussian parameters ``W^0 ~ N(0, sw0^2/d)``, ``b^0 ~ N(0, sb0^2)`` and, for
every later layer (hidden-to-hidden and readout), ``W ~ N(0, sw1^2/N)``, ``b ~ N(0, sb1^2)``.
``GaussNet``, ``ErfNet`` and ``ReLUNet`` are its single-hidden-layer cases (docs/physics.md,
section 1). Every kind is registered by a short key (:data:`ARCHITECTURES`: ``"mlp"``,
``"gauss"``, ``"erf"``, ``"relu"``) that specs, stores and the command line use.

From one object: :meth:`MLP.draw_outputs` (one network from one PRNG key, the hot path of the
ensemble sampler), :meth:`MLP.apply` (forward pass of given parameters),
:meth:`MLP.numpyro_model` (the same ensemble as a NumPyro generative model), and, in
:mod:`nnqft_ppl.networks.kernels` and :mod:`nnqft_ppl.oracle.exact`, its GP kernel and exact
cumulants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ..core.registry import Registry
from ..core.validation import check_positive_int
from .activations import Activation, get_activation

__all__ = [
    "MLP",
    "GaussNet",
    "ErfNet",
    "ReLUNet",
    "ARCHITECTURES",
    "architecture_from_dict",
    "build_architecture",
    "hidden_widths",
]

#: Architecture classes by key (filled by subclasses of :class:`MLP` that set ``key``).
ARCHITECTURES: Registry[type] = Registry("architecture")


@dataclass(frozen=True)
class MLP:
    """Fully connected network of ``depth`` hidden layers of equal width, scalar output.

    Args:
        depth: number of hidden layers (>= 1).
        activation: name of a registered activation: ``"erf"``, ``"relu"``, ``"tanh"`` (any
            depth), ``"gauss"`` (depth 1) or a user-defined one.
        d_in: input dimension d.
        sw0, sb0: first-layer weight / bias scales (``W^0 ~ N(0, sw0^2/d)``).
        sw1, sb1: scales of every later layer (``W ~ N(0, sw1^2/N)``), readout included.
            ``None`` for the biases means the activation's default (0 for ReLU, 1 otherwise).

    Example:
        >>> net = MLP(depth=3, activation="tanh", d_in=2)
        >>> net.n_parameters(width=10)
        251
    """

    key: ClassVar[str] = "mlp"

    depth: int = 1
    activation: str = "erf"
    d_in: int = 1
    sw0: float = 1.0
    sb0: float | None = None
    sw1: float = 1.0
    sb1: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "key" in cls.__dict__:
            ARCHITECTURES.register(cls.key, cls)

    def __post_init__(self):
        check_positive_int(self.depth, "depth")
        check_positive_int(self.d_in, "d_in")
        act = get_activation(self.activation)
        if act.needs_variance and self.depth != 1:
            raise ValueError(
                f"activation {self.activation!r} normalises by the pre-activation variance and "
                f"is defined for depth 1 only, got depth={self.depth}"
            )
        for name in ("sb0", "sb1"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, act.default_bias)
        for name in ("sw0", "sb0", "sw1", "sb1"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    # ----------------------------------------------------------------- description
    @property
    def phi(self) -> Activation:
        """The activation object."""
        return get_activation(self.activation)

    @property
    def name(self) -> str:
        """A short readable name, e.g. ``"ErfNet"`` or ``"MLP(depth=3, tanh)"``."""
        return f"MLP(depth={self.depth}, {self.activation})"

    def to_dict(self) -> dict:
        """Plain description (JSON-able) that :func:`architecture_from_dict` inverts."""
        return {"kind": self.key} | {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def n_parameters(self, width: int) -> int:
        """Number of scalar parameters of one network of hidden width ``width``."""
        d, n = self.d_in, width
        return (d + 1) * n + (self.depth - 1) * (n + 1) * n + n + 1

    # ----------------------------------------------------------------- forward pass
    def input_covariance(self, X: jnp.ndarray) -> jnp.ndarray:
        """First-layer pre-activation covariance ``sb0^2 + sw0^2 x.x'/d``: ``(P, d) -> (P, P)``."""
        return self.sb0**2 + self.sw0**2 * (X @ X.T) / self.d_in

    def unflatten(self, theta: jnp.ndarray, width: int) -> dict:
        """Scaled parameters of one network from ``n_parameters(width)`` standard normals.

        Layout of ``theta``: first layer ``[b0 | W0]`` row by neuron, then each hidden layer
        ``[b | W]``, then readout weights, then readout bias.
        """
        d, n = self.d_in, width
        params = {}
        first = theta[: (d + 1) * n].reshape(n, d + 1)
        params["b0"] = self.sb0 * first[:, 0]
        params["W0"] = (self.sw0 / math.sqrt(d)) * first[:, 1:]
        offset = (d + 1) * n
        for layer in range(1, self.depth):
            block = theta[offset : offset + (n + 1) * n].reshape(n, n + 1)
            params[f"b{layer}"] = self.sb1 * block[:, 0]
            params[f"W{layer}"] = (self.sw1 / math.sqrt(n)) * block[:, 1:]
            offset += (n + 1) * n
        params[f"W{self.depth}"] = (self.sw1 / math.sqrt(n)) * theta[offset : offset + n]
        params[f"b{self.depth}"] = self.sb1 * theta[offset + n]
        return params

    def hidden(self, params: dict, X: jnp.ndarray) -> jnp.ndarray:
        """The last hidden layer's activations ``(P, N)`` of one network (``params`` as from
        :meth:`unflatten`; the readout entries are not used)."""
        q = self.sb0**2 + self.sw0**2 * jnp.sum(X * X, axis=-1) / self.d_in  # Var z^0(x)
        h = self.phi(X @ params["W0"].T + params["b0"], q[:, None])  # (P, N)
        for layer in range(1, self.depth):
            h = self.phi(h @ params[f"W{layer}"].T + params[f"b{layer}"], None)
        return h

    def apply(self, params: dict, X: jnp.ndarray) -> jnp.ndarray:
        """Outputs of one network: ``params`` (as from :meth:`unflatten`), ``X (P, d) -> (P,)``.

        Vectorise over networks with ``jax.vmap(arch.apply, (0, None))``.
        """
        return self.hidden(params, X) @ params[f"W{self.depth}"] + params[f"b{self.depth}"]

    def readout_kernel(self, h: jnp.ndarray) -> jnp.ndarray:
        """``G_hat = sb1^2 + (sw1^2 / N) h h^T``: ``h (P, N) -> (P, P)``, the covariance of the
        outputs given the last hidden layer (the readout is Gaussian and independent of it)."""
        return self.sb1**2 + (self.sw1**2 / h.shape[-1]) * (h @ h.T)

    def n_hidden_parameters(self, width: int) -> int:
        """Parameters before the readout: the first ``n_hidden_parameters`` entries of theta."""
        return self.n_parameters(width) - width - 1

    def draw_parameters(self, key: jax.Array, width: int, dtype=jnp.float64, *,
                        hidden_only: bool = False) -> jax.Array:  # fmt: skip
        """The flat parameters ``(n_parameters,)`` of the network drawn from ``key`` (with
        ``hidden_only``: the first ``n_hidden_parameters``), one ``jax.random.normal`` call."""
        size = self.n_hidden_parameters(width) if hidden_only else self.n_parameters(width)
        theta = jax.random.normal(key, (size,), dtype=dtype)
        # Without the barrier XLA fuses the threefry hash into every consumer of theta and
        # recomputes it several times (measured: 5x slower sampling).
        return jax.lax.optimization_barrier(theta)

    def draw_layers(self, key: jax.Array, X: jnp.ndarray, width: int, dtype=jnp.float64, *,
                    readout: bool = True):  # fmt: skip
        """``(h (P, N), f (P,) or None)``: last hidden layer and outputs of the network whose
        parameters come from ``key``.

        One ``jax.random.normal`` call per network: with the threefry generator, network
        ``fold_in(root, a)`` gets bit-identical parameters alone or inside any vmapped chunk.
        With ``readout=False`` only the hidden parameters are drawn: with JAX's (default)
        partitionable threefry they are the first entries of the full draw, so the hidden layer
        is the same network's.
        """
        prefix = not readout and jax.config.jax_threefry_partitionable
        theta = self.draw_parameters(key, width, dtype, hidden_only=prefix)
        if prefix:  # pad the readout slots so unflatten keeps its layout (they are unused)
            theta = jnp.concatenate([theta, jnp.zeros(width + 1, dtype)])
        params = self.unflatten(theta, width)
        h = self.hidden(params, X.astype(dtype))
        if not readout:
            return h, None
        return h, h @ params[f"W{self.depth}"] + params[f"b{self.depth}"]

    def draw_outputs(self, key: jax.Array, X: jnp.ndarray, width: int, dtype=jnp.float64):
        """Outputs ``(P,)`` of the network whose parameters come from ``key``."""
        return self.draw_layers(key, X, width, dtype)[1]

    def draw_gram(self, key: jax.Array, X: jnp.ndarray, width: int, dtype=jnp.float64, *,
                  readout: bool = True):  # fmt: skip
        """``(G (P, P), f (P,) or None)``: one draw of the readout kernel and outputs at the
        P inputs, sampled layer by layer in function space (the *Gram sampler*).

        Given layer l, the N neurons of layer l + 1 are independent, each a centred Gaussian
        vector over the P inputs with covariance ``G^(l+1) = sb1^2 + (sw1^2/N) h h^T``
        (``h (P, N)`` the activations of layer l); the first layer's covariance is
        ``input_covariance(X)``. So ``z^(l+1) = S xi`` with ``S S^T = G^(l+1)`` and
        ``xi ~ N(0, 1)^(P, N)`` has exactly the law of the network's pre-activations at X:
        ``P N`` normals per layer instead of ``N^2``. The draw is a sample of the ensemble's
        joint law at X, not a parameter set (the function at other inputs is not defined),
        and it differs from :meth:`draw_layers` for the same key. One normal call per draw
        (counter-based: the same key gives the same draw alone or in any vmapped chunk).
        """
        P = X.shape[0]
        xi = jax.random.normal(key, (self.depth * width + (P if readout else 0), P), dtype)
        xi = jax.lax.optimization_barrier(xi)  # as in draw_layers: hash the bits once
        G = self.input_covariance(X.astype(dtype))
        q = jnp.diag(G)[:, None]  # Var z^0(x): activations that normalise by it (Gauss-net)
        for layer in range(self.depth):
            z = _psd_sqrt(G) @ xi[layer * width : (layer + 1) * width].T  # (P, N)
            G = self.readout_kernel(self.phi(z, q if layer == 0 else None))
        if not readout:
            return G, None
        return G, _psd_sqrt(G) @ xi[self.depth * width]

    # ----------------------------------------------------------------- NumPyro model
    def numpyro_model(self, X, width: int, n_networks: int | None = None):
        """The parameter prior as a NumPyro generative model; outputs in the site ``"f"``.

        Draw an ensemble with ``numpyro.infer.Predictive(arch.numpyro_model,
        num_samples=1)(key, X, width, n_networks)["f"][0]`` -> ``(n_networks, P)``.
        Sites: ``W0 (network, N, d)``, ``b0 (network, N)``, hidden ``W{l} (network, N, N)``,
        ``b{l}``, readout ``W{L} (network, N)``, ``b{L} (network,)``.
        """
        import numpyro
        import numpyro.distributions as dist

        X = jnp.asarray(X)
        d, n = self.d_in, width

        n_networks = n_networks or 1

        def normal(name, scale, shape):
            if scale == 0:  # a zero scale is a point mass: no random site at all
                return numpyro.deterministic(name, jnp.zeros((n_networks, *shape)))
            prior = dist.Normal(0.0, scale).expand(shape).to_event(len(shape))
            return numpyro.sample(name, prior)

        with numpyro.plate("network", n_networks):
            params = {
                "W0": normal("W0", self.sw0 / math.sqrt(d), (n, d)),
                "b0": normal("b0", self.sb0, (n,)),
            }
            for layer in range(1, self.depth):
                params[f"W{layer}"] = normal(f"W{layer}", self.sw1 / math.sqrt(n), (n, n))
                params[f"b{layer}"] = normal(f"b{layer}", self.sb1, (n,))
            params[f"W{self.depth}"] = normal(f"W{self.depth}", self.sw1 / math.sqrt(n), (n,))
            params[f"b{self.depth}"] = normal(f"b{self.depth}", self.sb1, ())
            f = jax.vmap(self.apply, (0, None))(params, X)
            return numpyro.deterministic("f", f)


ARCHITECTURES.register(MLP.key, MLP)


def _psd_sqrt(G: jnp.ndarray) -> jnp.ndarray:
    """``S (P, P)`` with ``S S^T = G`` for a symmetric positive semi-definite G, singular ones
    included (collinear inputs, a first layer of rank d + 1 < P): eigenvalues that rounding
    pushed below 0 count as 0."""
    lam, U = jnp.linalg.eigh(G)
    return U * jnp.sqrt(jnp.clip(lam, 0, None))


def _single_layer(key_name: str, activation_name: str, default_bias: float, doc: str):
    @dataclass(frozen=True)
    class Net(MLP):
        key: ClassVar[str] = key_name
        depth: int = field(default=1, init=False)
        activation: str = field(default=activation_name, init=False)
        d_in: int = 1
        sw0: float = 1.0
        sb0: float | None = default_bias
        sw1: float = 1.0
        sb1: float | None = default_bias

        @property
        def name(self) -> str:
            return type(self).__name__

    Net.__doc__ = doc
    return Net


GaussNet = _single_layer(
    "gauss",
    "gauss",
    1.0,
    """Gauss-net: ``phi = exp(z - q(x))``, ``K = sb1^2 + sw1^2 exp(-sw0^2 |x - x'|^2 / (2d))``.

    Example: ``GaussNet(d_in=1, sb0=0.5)``.""",
)
GaussNet.__name__ = GaussNet.__qualname__ = "GaussNet"
ErfNet = _single_layer(
    "erf",
    "erf",
    1.0,
    """Erf-net: ``phi = erf(z)``,
    ``K = sb1^2 + (2 sw1^2 / pi) asin(2c / sqrt((1 + 2q)(1 + 2q')))``.""",
)
ErfNet.__name__ = ErfNet.__qualname__ = "ErfNet"
ReLUNet = _single_layer(
    "relu",
    "relu",
    0.0,
    """ReLU-net: ``phi = max(0, z)``, arc-cosine kernel; biases default to 0.""",
)
ReLUNet.__name__ = ReLUNet.__qualname__ = "ReLUNet"


def architecture_from_dict(spec: dict) -> MLP:
    """Inverse of :meth:`MLP.to_dict`; unknown kinds get an error listing the known ones."""
    spec = dict(spec)
    cls = ARCHITECTURES.get_or_raise(spec.pop("kind", "mlp"))
    allowed = {f.name for f in fields(cls) if f.init}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"{cls.key} has no field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return cls(**spec)


def build_architecture(kind: str, *, depth: int = 1, activation: str | None = None, **scales):
    """The architecture of registered ``kind`` (specs and the command line build them here).

    ``depth`` and ``activation`` apply to ``kind="mlp"`` (activation default ``"tanh"``); a
    single-hidden-layer kind refuses a depth other than 1 or a different activation. ``scales``:
    ``d_in``, ``sw0``, ``sb0``, ``sw1``, ``sb1`` (None entries take the defaults).

    Example:
        >>> build_architecture("mlp", depth=3, activation="relu", d_in=2, sw1=2**0.5)
    """
    cls = ARCHITECTURES.get_or_raise(kind)
    scales = {k: v for k, v in scales.items() if v is not None}
    if cls is MLP:
        return MLP(depth=depth, activation=activation or "tanh", **scales)
    if depth != 1:
        raise ValueError(f"architecture {kind!r} has one hidden layer; use kind 'mlp' for depth "
                         f"{depth}")  # fmt: skip
    fixed = {f.name: f.default for f in fields(cls) if not f.init}
    if activation is not None and activation != fixed["activation"]:
        raise ValueError(
            f"architecture {kind!r} has activation {fixed['activation']!r}, not {activation!r}; "
            "use kind 'mlp' for other activations"
        )
    return cls(**scales)


def hidden_widths(arch: MLP, width) -> tuple[int, ...]:
    """The widths ``(n_1, ..., n_L)`` of the hidden layers: one int for all, or one per layer.

    (Sampled ensembles have equal widths; the theory of deep nets takes any.)
    """
    if isinstance(width, str) or not np.iterable(width):
        return (check_positive_int(width, "width"),) * arch.depth
    widths = tuple(check_positive_int(w, "width") for w in np.asarray(width).ravel().tolist())
    if len(widths) != arch.depth:
        raise ValueError(
            f"width must be an int or one int per hidden layer ({arch.depth}), got "
            f"{len(widths)} values"
        )
    return widths
