"""nnqft_ppl: probabilistic programming for the neural-network / field-theory correspondence.

Quick start::

    import nnqft_ppl as nq
    arch = nq.GaussNet(d_in=1)
    K = nq.kernel(arch, X)                                   # (P, P) GP kernel
    stats = nq.correlators(arch, X, width=10, n_networks=10**6, seed=0, max_order=6)
    stats.cumulant(4), stats.stderr(4)                       # xarray over `tuple`
    k4 = nq.exact_cumulant(arch, X, width=10, order=4)       # exact finite-width oracle
"""

import jax

# Cumulants are small differences of large moments, and the theory (kernels, quadrature,
# Feynman integrals) must be checked to ~1e-8: the library works in float64 throughout.
jax.config.update("jax_enable_x64", True)

from .activations import ACTIVATIONS, get_activation  # noqa: E402
from .architectures import MLP, ErfNet, GaussNet, ReLUNet, architecture_from_dict  # noqa: E402

# --- ensembles, correlators, exact oracle (issue 2)
from .correlators import (  # noqa: E402
    BatchErrorWarning,
    CorrelatorStats,
    correlators,
    monte_carlo_kernel,
)
from .ensemble import MomentSums, accumulate_moments, sample_outputs  # noqa: E402
from .exact import exact_covariance, exact_cumulant, exact_cumulants, exact_moments  # noqa: E402
from .kernels import interaction_kernel, kernel  # noqa: E402
from .multisets import index_multisets, tuple_labels  # noqa: E402
from .presets import paper_inputs  # noqa: E402
from .statistics import chi_square  # noqa: E402

# --- EFT: Feynman diagrams, couplings, symmetries, RG (issue 3)
# isort: split
from . import couplings  # noqa: E402
from .couplings import fit_coupling, measured_coupling  # noqa: E402
from .feynman import eft_correlators, eft_cumulants  # noqa: E402
from .rg import rg_flow  # noqa: E402
from .symmetries import allowed_coupling_forms, gp_symmetries  # noqa: E402
from .vertex import vertex_integral  # noqa: E402

# --- likelihoods and inference (issue 4)
# isort: split
from . import diagnostics, inference, likelihoods  # noqa: E402
from .diagnostics import compare_forms, diagnose, posterior_predictive_check  # noqa: E402
from .inference import infer, infer_correlators  # noqa: E402
from .likelihoods import (  # noqa: E402
    CorrelatorData,
    FieldStatistics,
    correlator_data,
    field_statistics,
)

# --- specs, report, reproduce (issue 5)
# isort: split
from . import studies  # noqa: E402
from .report import build_report  # noqa: E402
from .specs import Spec, SpecError, load_spec  # noqa: E402
from .zoo import reproduce, run_spec  # noqa: E402

__all__ = [
    "ACTIVATIONS",
    "get_activation",
    "MLP",
    "ErfNet",
    "GaussNet",
    "ReLUNet",
    "architecture_from_dict",
    "kernel",
    "interaction_kernel",
    "index_multisets",
    "tuple_labels",
    # ensembles, correlators, exact oracle (issue 2)
    "BatchErrorWarning",
    "CorrelatorStats",
    "correlators",
    "monte_carlo_kernel",
    "MomentSums",
    "accumulate_moments",
    "sample_outputs",
    "exact_covariance",
    "exact_cumulant",
    "exact_cumulants",
    "exact_moments",
    "paper_inputs",
    "chi_square",
    # EFT (issue 3)
    "couplings",
    "vertex_integral",
    "measured_coupling",
    "fit_coupling",
    "eft_cumulants",
    "eft_correlators",
    "rg_flow",
    "gp_symmetries",
    "allowed_coupling_forms",
    # likelihoods and inference (issue 4)
    "likelihoods",
    "inference",
    "diagnostics",
    "infer",
    "infer_correlators",
    "diagnose",
    "compare_forms",
    "posterior_predictive_check",
    "CorrelatorData",
    "FieldStatistics",
    "correlator_data",
    "field_statistics",
    # specs, report, reproduce (issue 5)
    "studies",
    "load_spec",
    "Spec",
    "SpecError",
    "run_spec",
    "reproduce",
    "build_report",
]
__version__ = "0.1.0"
