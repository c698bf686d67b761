"""The paper's default inputs, in one place for the CLI, the model zoo and the examples."""

from __future__ import annotations

import numpy as np

from .architectures import MLP

__all__ = ["paper_inputs"]

#: d_in = 1 inputs of the Gauss- and Erf-net studies (close to the origin).
CENTRED_INPUTS = (-0.01, -0.006, -0.002, 0.002, 0.006, 0.01)
#: Positive inputs for ReLU-net: without biases only y > 0 interacts (SPEC section 3).
POSITIVE_INPUTS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)


def paper_inputs(arch: MLP) -> np.ndarray:
    """Default inputs ``(6, 1)`` for a d_in = 1 architecture: positive ones for ReLU."""
    if arch.d_in != 1:
        raise ValueError(f"default inputs exist for d_in = 1 only; give X for d_in = {arch.d_in}")
    values = POSITIVE_INPUTS if arch.activation == "relu" else CENTRED_INPUTS
    return np.array(values)[:, None]
