"""The classic study's default inputs, in one place for the CLI, the model zoo and the examples.

Six inputs in d_in = 1, as in the original Gauss-, Erf- and ReLU-net experiments:

* Erf-net (and other odd, saturating activations): ``-1, -0.6, -0.2, 0.2, 0.6, 1``;
* Gauss-net: the same times 0.01 (its kernel varies on the scale ``sqrt(d) / sw0``, so these
  inputs probe it near the origin);
* ReLU-net (positively homogeneous activations): ``0.2, 0.4, ..., 1.2``: without biases only
  ``y > 0`` interacts with positive inputs (docs/physics.md §3).

For ``d_in > 1`` the preset points are spread over the coordinates (coordinate j is scaled by
``1 + 0.3 j``), so that they are not collinear.
"""

from __future__ import annotations

import numpy as np

from .architectures import MLP

__all__ = ["paper_inputs", "SYMMETRIC_INPUTS", "POSITIVE_INPUTS"]

#: Erf-net inputs; Gauss-net uses 0.01 times them.
SYMMETRIC_INPUTS = (-1.0, -0.6, -0.2, 0.2, 0.6, 1.0)
#: ReLU-net inputs (positive).
POSITIVE_INPUTS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2)
#: Scale of the symmetric inputs per activation (Gauss-net's are close to the origin).
_SCALE = {"gauss": 0.01}


def paper_inputs(arch: MLP, positive: bool | None = None) -> np.ndarray:
    """Default inputs ``(6, d_in)`` for ``arch``.

    Args:
        arch: the architecture (its activation picks the preset).
        positive: force the positive preset (True) or the symmetric one (False); default: positive
            for positively homogeneous activations (ReLU), symmetric otherwise.

    Example:
        >>> paper_inputs(ErfNet())[:, 0]
        array([-1. , -0.6, -0.2,  0.2,  0.6,  1. ])
    """
    if positive is None:
        positive = arch.phi.positively_homogeneous
    base = np.asarray(POSITIVE_INPUTS if positive else SYMMETRIC_INPUTS)
    base = base * (1.0 if positive else _SCALE.get(arch.activation, 1.0))
    return base[:, None] * (1 + 0.3 * np.arange(arch.d_in))[None, :]
