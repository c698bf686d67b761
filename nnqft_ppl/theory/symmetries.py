"""GP-limit symmetries of a kernel, tested numerically, and the coupling bases they allow.

A symmetry of the free theory constrains the couplings ('t Hooft naturalness: a coupling that
breaks a symmetry of the GP limit is not generated): translation invariance (Gauss-net) allows
a constant ``lambda`` only; rotation and parity invariance (Erf-, ReLU-net) allow functions of
``|y|``; parity alone (d >= 2) allows even polynomials; no symmetry, any polynomial in y.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import special_ortho_group

from ..networks.architectures import MLP
from ..networks.kernels import kernel
from .couplings import Constant, CouplingForm, Polynomial, RadialPolynomial

__all__ = ["gp_symmetries", "allowed_coupling_forms"]


def gp_symmetries(
    arch: MLP, n_points: int = 8, n_trials: int = 4, seed: int = 0, rtol: float = 1e-9
) -> set[str]:
    """Symmetries of the GP kernel of ``arch``, tested on random points.

    For each candidate ``g`` (random translations, random rotations in SO(d) for d >= 2, and
    parity ``x -> -x``) checks ``K(g X, g X) = K(X, X)`` to relative tolerance ``rtol`` on
    ``n_trials`` random point sets of ``n_points`` standard-normal inputs.

    Returns:
        a subset of ``{"translation", "rotation", "parity"}`` (``"rotation"`` only for d >= 2:
        SO(1) is trivial).

    Example:
        >>> gp_symmetries(GaussNet(d_in=2))
        {'parity', 'rotation', 'translation'}
    """
    rng = np.random.default_rng(seed)
    d = arch.d_in

    def invariant(transform) -> bool:
        for _ in range(n_trials):
            X = rng.normal(size=(n_points, d))
            K0, K1 = kernel(arch, X), kernel(arch, transform(X))
            if not np.allclose(K1, K0, rtol=rtol, atol=rtol * np.abs(K0).max()):
                return False
        return True

    found = set()
    if invariant(lambda X: X + rng.normal(size=(1, d))):
        found.add("translation")
    if d >= 2 and invariant(lambda X: X @ special_ortho_group.rvs(d, random_state=rng).T):
        found.add("rotation")
    if invariant(lambda X: -X):
        found.add("parity")
    return found


def allowed_coupling_forms(arch: MLP, degree: int = 2) -> tuple[CouplingForm, ...]:
    """Coupling forms the GP-limit symmetries of ``arch`` allow, simplest first, up to ``degree``.

    * translation invariance: ``(Constant(),)``;
    * rotations (d >= 2) or parity (d = 1): ``(Constant(), RadialPolynomial((0, 2, ...)))``;
    * parity only (d >= 2): ``(Constant(), Polynomial(degree, d, even=True))``;
    * none: ``(Constant(), Polynomial(degree, d))``.

    Example:
        >>> allowed_coupling_forms(ErfNet())
        (Constant(), RadialPolynomial(powers=(0, 2)))
    """
    symmetries = gp_symmetries(arch)
    d = arch.d_in
    if "translation" in symmetries:
        return (Constant(),)
    if "rotation" in symmetries or (d == 1 and "parity" in symmetries):
        return (Constant(), RadialPolynomial(powers=tuple(range(0, degree + 1, 2))))
    if "parity" in symmetries:
        return (Constant(), Polynomial(degree=degree, d_in=d, even=True))
    return (Constant(), Polynomial(degree=degree, d_in=d))
