"""Layer 2, networks: activations, architectures (one description gives the sampler, the
forward pass, the NumPyro model and the kernel), GP kernels, the neural tangent kernel and the
classic inputs."""

from .activations import ACTIVATIONS, Activation, Erf, GaussExp, ReLU, Tanh, get_activation
from .architectures import (
    ARCHITECTURES,
    MLP,
    ErfNet,
    GaussNet,
    ReLUNet,
    architecture_from_dict,
    build_architecture,
)
from .kernels import interaction_kernel, kernel, kernel_entry, kernel_matrix
from .ntk import learning_rate_limit, ntk
from .presets import paper_inputs

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Erf",
    "GaussExp",
    "ReLU",
    "Tanh",
    "get_activation",
    "ARCHITECTURES",
    "MLP",
    "ErfNet",
    "GaussNet",
    "ReLUNet",
    "architecture_from_dict",
    "build_architecture",
    "interaction_kernel",
    "kernel",
    "kernel_entry",
    "kernel_matrix",
    "learning_rate_limit",
    "ntk",
    "paper_inputs",
]
