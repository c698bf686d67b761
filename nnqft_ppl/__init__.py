"""nnqft_ppl: probabilistic programming for the neural-network / field-theory correspondence.

The package is layered, each layer importing only the ones before it:
``core`` -> ``networks`` -> ``oracle`` -> ``ensembles`` -> ``theory`` -> ``inference`` ->
``zoo`` -> ``cli``. This module only re-exports the public API.

Quick start::

    import nnqft_ppl as nq
    arch = nq.GaussNet(d_in=1)
    X = nq.paper_inputs(arch)                                # (6, 1)
    K = nq.kernel(arch, X)                                   # (P, P) GP kernel
    stats = nq.correlators(arch, X, width=10, n_networks=10**6, max_order=6)
    stats.cumulant(4), stats.stderr(4)                       # xarray over `tuple`
    k4 = nq.exact_cumulant(arch, X, width=10, order=4)       # exact finite-width oracle

Importing the package leaves JAX's global configuration alone; its functions compute in float64
internally. ``nq.enable_x64()`` switches JAX to float64 globally, if you want that.
"""

from .core import chi_square, enable_x64, index_multisets, tuple_labels
from .ensembles import (
    BatchErrorWarning,
    CorrelatorStats,
    Ensemble,
    MomentSums,
    SmallEnsembleWarning,
    accumulate_moments,
    correlator_stats_from_outputs,
    correlators,
    monte_carlo_kernel,
    sample_outputs,
    train_ensemble,
)
from .inference import (
    ClosedFormSettings,
    CorrelatorData,
    FieldStatistics,
    NUTSSettings,
    SVISettings,
    compare_forms,
    correlator_data,
    diagnose,
    field_statistics,
    infer,
    infer_correlators,
    likelihoods,
    posterior_predictive_check,
)
from .networks import (
    ACTIVATIONS,
    MLP,
    Activation,
    ErfNet,
    GaussNet,
    ReLUNet,
    architecture_from_dict,
    get_activation,
    interaction_kernel,
    kernel,
    learning_rate_limit,
    ntk,
    paper_inputs,
)
from .oracle import exact_covariance, exact_cumulant, exact_cumulants, exact_moments
from .theory import (
    allowed_coupling_forms,
    coupling_form,
    couplings,
    critical_initialization,
    eft_correlators,
    eft_cumulants,
    fit_coupling,
    four_point_vertex,
    gp_symmetries,
    is_critical,
    measured_coupling,
    nlo_kernel,
    ntk_predict,
    perturbative_cumulant,
    rg_flow,
    vertex_growth,
    vertex_integral,
)
from .zoo import (
    Spec,
    SpecError,
    build_report,
    load_spec,
    register_study,
    reproduce,
    run_spec,
    spec_model,
    studies,
)

__all__ = [
    "chi_square",
    "enable_x64",
    "index_multisets",
    "tuple_labels",
    "BatchErrorWarning",
    "CorrelatorStats",
    "SmallEnsembleWarning",
    "Ensemble",
    "MomentSums",
    "accumulate_moments",
    "correlators",
    "monte_carlo_kernel",
    "sample_outputs",
    "correlator_stats_from_outputs",
    "train_ensemble",
    "CorrelatorData",
    "FieldStatistics",
    "NUTSSettings",
    "SVISettings",
    "ClosedFormSettings",
    "compare_forms",
    "correlator_data",
    "diagnose",
    "field_statistics",
    "infer",
    "infer_correlators",
    "likelihoods",
    "posterior_predictive_check",
    "ACTIVATIONS",
    "MLP",
    "Activation",
    "ErfNet",
    "GaussNet",
    "ReLUNet",
    "architecture_from_dict",
    "get_activation",
    "interaction_kernel",
    "kernel",
    "learning_rate_limit",
    "ntk",
    "paper_inputs",
    "exact_covariance",
    "exact_cumulant",
    "exact_cumulants",
    "exact_moments",
    "allowed_coupling_forms",
    "critical_initialization",
    "four_point_vertex",
    "is_critical",
    "nlo_kernel",
    "ntk_predict",
    "perturbative_cumulant",
    "vertex_growth",
    "coupling_form",
    "couplings",
    "eft_correlators",
    "eft_cumulants",
    "fit_coupling",
    "gp_symmetries",
    "measured_coupling",
    "rg_flow",
    "vertex_integral",
    "Spec",
    "SpecError",
    "build_report",
    "load_spec",
    "register_study",
    "reproduce",
    "run_spec",
    "spec_model",
    "studies",
]
__version__ = "0.1.0"
