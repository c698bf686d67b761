"""Declarative study specs (TOML) for the model zoo, validated with pydantic.

A spec names a *study* (what to measure and claim), an architecture, its inputs, the ensembles
(widths and sizes), the theory settings (cutoffs, coupling form, held-out inputs) and, when it
names a likelihood, the NumPyro inference. Sizes come at named scales: ``default`` (what
``nnqft reproduce`` runs in minutes) and ``paper`` (1e6 networks per width); a spec may add
more (e.g. ``test``), each a partial override of the ensemble / theory / inference tables.

Names are looked up in the registries, so a user's own activation, coupling form or study kind
is accepted once its class (or function) is defined. Every error is one line naming the field,
the value and what is allowed::

    >>> spec = load_spec("falloff_relu")             # a zoo name, or a path to a TOML file
    >>> arch = spec.architecture_for(); X = spec.inputs_for(arch)
    >>> spec.ensemble_sizes()                         # {width: n_networks}

``models/template.toml`` documents every field line by line. Specs describe; the zoo runner
(:mod:`nnqft_ppl.zoo.runner`) turns them into ensembles, likelihoods and inference calls.
"""

from __future__ import annotations

import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.registry import Registry
from ..networks.activations import ACTIVATIONS
from ..networks.architectures import ARCHITECTURES, MLP, build_architecture
from ..networks.presets import paper_inputs
from ..theory.couplings import CouplingForm, coupling_form

__all__ = [
    "Spec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "STUDIES",
    "register_study",
    "ZOO",
    "zoo_spec_path",
    "resolve_spec",
    "spec_display_name",
    "deep_architecture",
]

#: Study runners by kind (``study = "..."`` in a spec); see :func:`register_study`.
STUDIES: Registry = Registry("study")

#: The specs ``nnqft reproduce`` runs, in report order (files ``models/<name>.toml``).
ZOO = (
    "falloff_gauss",
    "falloff_erf",
    "falloff_relu",
    "falloff_gauss_paper",
    "coupling_gauss",
    "coupling_erf",
    "coupling_relu",
    "rg_relu",
    "rg_gauss",
    "sixpoint_erf",
    "sixpoint_gauss",
    "sixpoint_relu",
    "symmetry_erf",
    "symmetry_gauss",
    "training_erf",
    "deep_relu",
    "deep_tanh",
)


def register_study(kind: str):
    """Decorator: make ``study = "<kind>"`` in a spec run ``runner(spec, cache, progress)``.

    The runner returns a :class:`~nnqft_ppl.zoo.results.StudyResult`.
    """

    def decorate(runner):
        STUDIES.register(kind, runner)
        return runner

    return decorate


def zoo_spec_path(name: str) -> Path:
    """Path of the zoo spec ``name`` (``models/<name>.toml``, shipped with the package)."""
    return Path(str(resources.files("nnqft_ppl.models").joinpath(f"{name}.toml")))


class SpecError(ValueError):
    """A spec that cannot be loaded; the message is one line naming the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(registry: Registry, value):
    if value is not None and value not in registry:
        raise ValueError(f"not a known {registry.kind}; allowed: {', '.join(sorted(registry))}")
    return value


def _form_names(value: str) -> str:
    """A coupling-form name: a registered key or keys joined by '+'."""
    try:
        coupling_form(value)
    except ValueError as err:
        raise ValueError(str(err)) from None
    return value


class ArchitectureSpec(_Strict):
    """``[architecture]``: kind and scales (None = the activation's defaults)."""

    kind: str
    d_in: int = Field(1, ge=1, le=3)
    depth: int = Field(1, ge=1)
    activation: str | None = None
    sw0: float = Field(1.0, ge=0)
    sb0: float | None = Field(None, ge=0)
    sw1: float = Field(1.0, ge=0)
    sb1: float | None = Field(None, ge=0)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value):
        return _registered(ARCHITECTURES, value)

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, value):
        return _registered(ACTIVATIONS, value)


class InputsSpec(_Strict):
    """``[inputs]``: ``preset`` ("paper": the classic 6 inputs for the activation, "positive":
    the positive ones) or explicit ``points``; all multiplied by ``scale``."""

    preset: Literal["paper", "positive"] | None = "paper"
    points: list[list[float]] | None = None
    scale: float = Field(1.0, gt=0)


class EnsembleSpec(_Strict):
    """``[ensemble]``: widths and sizes (``n(N) = min(n_networks, network_budget // N)``), the
    estimator, how networks are drawn (``sampler``) and the precision of the draws (``dtype``)."""

    widths: list[int] = Field(min_length=1)
    n_networks: int = Field(ge=1000)
    network_budget: int | None = Field(None, ge=1000)
    seed: int = Field(0, ge=0)
    n_batches: int = Field(200, ge=10)
    max_order: Literal[2, 4, 6, 8] = 6
    estimator: Literal["kernel", "outputs", "both"] = "both"
    sampler: Literal["parameters", "gram"] = "parameters"
    dtype: Literal["float64", "float32"] = "float64"

    @field_validator("widths")
    @classmethod
    def _positive(cls, widths):
        bad = [w for w in widths if w <= 0]
        if bad:
            raise ValueError(f"widths must be positive integers, got {bad[0]}")
        if len(set(widths)) != len(widths):
            raise ValueError("widths must be distinct")
        return sorted(widths)


class CutoffGrid(_Strict):
    """Log-spaced cutoffs ``geomspace(start, stop, num)``."""

    start: float = Field(gt=0)
    stop: float = Field(gt=0)
    num: int = Field(11, ge=3)


class TheorySpec(_Strict):
    """``[theory]``: cutoff L of the vertex integrals (``0`` is invalid; omit for all of input
    space), coupling form, RG cutoffs / dimensions, held-out input scale, 6-pt widths."""

    cutoff: float | None = Field(None, gt=0)
    form: str = "constant"
    forms: list[str] = ["constant", "radial"]
    rg_cutoffs: CutoffGrid | None = None
    dimensions: list[int] | None = None
    heldout_scale: float | None = Field(None, gt=0)
    input_scales: list[float] | None = None
    oracle_width: int | None = Field(None, ge=1)
    error_networks: int = Field(1_000_000, ge=1000)

    @field_validator("form")
    @classmethod
    def _known_form(cls, value):
        return _form_names(value)

    @field_validator("forms")
    @classmethod
    def _known_forms(cls, value):
        return [_form_names(f) for f in value]

    @field_validator("dimensions")
    @classmethod
    def _dims(cls, dims):
        if dims is not None and any(d not in (1, 2, 3) for d in dims):
            raise ValueError(f"dimensions must be 1, 2 or 3, got {dims}")
        return dims

    @field_validator("input_scales")
    @classmethod
    def _scales(cls, scales):
        if scales is not None and any(s <= 0 for s in scales):
            raise ValueError(f"input scales must be > 0, got {scales}")
        return scales


class InferenceSpec(_Strict):
    """``[inference]``: which likelihoods feed ``nq.infer`` at which width."""

    likelihoods: list[Literal["correlator", "field"]] = ["correlator"]
    method: Literal["nuts", "svi", "closed_form"] = "nuts"
    width: int = Field(ge=1)
    num_chains: int = Field(4, ge=1)
    num_warmup: int = Field(500, ge=10)
    num_samples: int = Field(1000, ge=10)
    seed: int = Field(0, ge=0)


class TrainingSpec(_Strict):
    """``[training]``: every network of the ensemble trained by full-batch gradient descent
    (``optax.sgd``) on ``n_train`` points ``x = linspace(x_min, x_max)`` of ``y = sin(frequency
    x)`` (d_in = 1), rate ``eta = rate_factor / lambda_max(Theta_XX)`` (stable below 2), outputs
    recorded at the ``snapshots`` steps; the NTK comparison trains ``ntk_networks`` networks at
    each of ``ntk_widths``."""

    steps: int = Field(ge=1)
    snapshots: list[int] | None = None
    rate_factor: float = Field(1.0, gt=0, lt=2)
    n_train: int = Field(8, ge=2)
    x_min: float = -1.0
    x_max: float = 1.0
    frequency: float = 3.0
    ntk_widths: list[int] = [1024]
    ntk_networks: int = Field(32, ge=2)
    precision: Literal["float64", "mixed"] = "float64"

    @field_validator("snapshots")
    @classmethod
    def _within_steps(cls, snapshots, info):
        if snapshots is None:
            return None
        steps = info.data.get("steps", 0)
        bad = [s for s in snapshots if not 0 <= s <= steps]
        if bad or not snapshots:
            raise ValueError(f"snapshots must be steps in [0, steps = {steps}], got {bad or []}")
        if len(set(snapshots)) != len(snapshots):
            raise ValueError("snapshots must be distinct")
        return sorted(snapshots)

    @field_validator("x_max")
    @classmethod
    def _range(cls, x_max, info):
        if "x_min" in info.data and not x_max > info.data["x_min"]:
            raise ValueError(f"must exceed x_min = {info.data['x_min']}")
        return x_max

    @field_validator("ntk_widths")
    @classmethod
    def _ntk_widths(cls, widths):
        return EnsembleSpec._positive(widths)

    def steps_recorded(self) -> list[int]:
        """The snapshot steps (``[0, steps]`` unless given)."""
        return self.snapshots if self.snapshots is not None else [0, self.steps]

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X_train (n_train, 1), y_train (n_train,))``."""
        x = np.linspace(self.x_min, self.x_max, self.n_train)
        return x[:, None], np.sin(self.frequency * x)


def _depth_list(depths: list[int] | None, name: str) -> list[int] | None:
    """Positive, distinct depths, sorted (None passes)."""
    if depths is None:
        return None
    if not depths or any(d < 1 for d in depths) or len(set(depths)) != len(depths):
        raise ValueError(f"{name} must be distinct integers >= 1, got {depths}")
    return sorted(depths)


class DeepCase(_Strict):
    """``[[deep.cases]]``: one more network measured like ``[architecture]``, with these scales
    replaced (the ones left out are kept)."""

    label: str = Field(pattern=r"^[a-z0-9_]+$")
    sw0: float | None = Field(None, ge=0)
    sb0: float | None = Field(None, ge=0)
    sw1: float | None = Field(None, ge=0)
    sb1: float | None = Field(None, ge=0)


class DeepSpec(_Strict):
    """``[deep]`` (study ``deep``): the depths measured at every width, the depth-growth
    measurement (``growth_depths`` at ``growth_width``; defaults 1..max(depths) and the largest
    width), the name of ``[architecture]``'s own case and further ``cases``."""

    label: str = Field("base", pattern=r"^[a-z0-9_]+$")
    depths: list[int] = [2, 3, 5]
    growth_depths: list[int] | None = None
    growth_width: int | None = Field(None, ge=1)
    cases: list[DeepCase] = []

    @field_validator("depths")
    @classmethod
    def _depths(cls, depths):
        return _depth_list(depths, "depths")

    @field_validator("growth_depths")
    @classmethod
    def _growth(cls, depths):
        return _depth_list(depths, "growth_depths")

    def depth_list(self) -> list[int]:
        """``growth_depths``, or 1..max(depths)."""
        return self.growth_depths or list(range(1, max(self.depths) + 1))


class ScaleSpec(_Strict):
    """``[scale.<name>]``: partial overrides applied on top of the base settings."""

    widths: list[int] | None = None
    n_networks: int | None = Field(None, ge=1000)
    network_budget: int | None = Field(None, ge=1000)
    dimensions: list[int] | None = None
    rg_num: int | None = Field(None, ge=3)
    num_warmup: int | None = Field(None, ge=10)
    num_samples: int | None = Field(None, ge=10)
    num_chains: int | None = Field(None, ge=1)
    inference_width: int | None = Field(None, ge=1)
    training_steps: int | None = Field(None, ge=1)
    snapshots: list[int] | None = None
    ntk_widths: list[int] | None = None
    ntk_networks: int | None = Field(None, ge=2)
    depths: list[int] | None = None

    @field_validator("widths", "ntk_widths")
    @classmethod
    def _positive(cls, widths):
        return EnsembleSpec._positive(widths) if widths is not None else None

    @field_validator("depths")
    @classmethod
    def _depths(cls, depths):
        return _depth_list(depths, "depths")


class Spec(_Strict):
    """One study of the zoo (see ``models/template.toml``)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    study: str
    description: str = ""
    architecture: ArchitectureSpec
    inputs: InputsSpec = InputsSpec()
    ensemble: EnsembleSpec | None = None
    theory: TheorySpec = TheorySpec()
    inference: InferenceSpec | None = None
    training: TrainingSpec | None = None
    deep: DeepSpec | None = None
    claims: list[str] | None = None
    scale: dict[str, ScaleSpec] = {}

    @field_validator("study")
    @classmethod
    def _known_study(cls, value):
        return _registered(STUDIES, value)

    # ----------------------------------------------------------------- resolved settings
    def at_scale(self, scale: str = "default") -> Spec:
        """The spec with the overrides of ``[scale.<scale>]`` applied.

        ``default`` (and a scale the spec does not override, e.g. ``paper`` for a noise-free
        oracle study) is the spec itself.
        """
        if scale == "default" or scale not in self.scale:
            return self
        o = self.scale[scale]
        ens, theory, inf = self.ensemble, self.theory, self.inference
        if ens is not None:
            ens = _override(ens, widths=o.widths, n_networks=o.n_networks,
                            network_budget=o.network_budget)  # fmt: skip
            if o.network_budget is None and o.n_networks is not None and scale == "paper":
                ens = ens.model_copy(update={"network_budget": None})
        theory = _override(theory, dimensions=o.dimensions)
        if o.rg_num is not None and theory.rg_cutoffs is not None:
            grid = theory.rg_cutoffs.model_copy(update={"num": o.rg_num})
            theory = theory.model_copy(update={"rg_cutoffs": grid})
        if inf is not None:
            inf = _override(inf, num_warmup=o.num_warmup, num_samples=o.num_samples,
                            num_chains=o.num_chains, width=o.inference_width)  # fmt: skip
        deep = self.deep
        if deep is not None and o.depths is not None:
            deep = deep.model_copy(update={"depths": o.depths, "growth_depths": None})
        update = {"ensemble": ens, "theory": theory, "inference": inf, "deep": deep}
        if self.training is not None:  # re-validated: the snapshots must fit the steps
            merged = _override(self.training, steps=o.training_steps, snapshots=o.snapshots,
                               ntk_widths=o.ntk_widths, ntk_networks=o.ntk_networks)  # fmt: skip
            update["training"] = TrainingSpec.model_validate(merged.model_dump())
        return self.model_copy(update=update)

    def architecture_for(
        self, d_in: int | None = None, depth: int | None = None, **scales: float
    ) -> MLP:
        """The architecture object; ``d_in`` (RG in d = 1, 2, 3), ``depth`` and the ``scales``
        (``sw0``, ``sb0``, ``sw1``, ``sb1``) override the spec's."""
        a = self.architecture
        scales = {"sw0": a.sw0, "sb0": a.sb0, "sw1": a.sw1, "sb1": a.sb1} | scales
        return build_architecture(
            a.kind, depth=depth or a.depth, activation=a.activation,
            d_in=a.d_in if d_in is None else d_in, **scales,
        )  # fmt: skip

    def inputs_for(self, arch: MLP) -> np.ndarray:
        """Inputs ``(P, d_in)`` of the spec for ``arch``."""
        spec = self.inputs
        if spec.points is not None:
            X = np.asarray(spec.points, dtype=np.float64)
            if X.ndim != 2 or X.shape[1] != arch.d_in:
                raise SpecError(
                    f"inputs.points: each point needs {arch.d_in} coordinate(s) (d_in), "
                    f"got shape {X.shape}"
                )
        else:
            X = paper_inputs(arch, positive=True if spec.preset == "positive" else None)
        return X * spec.scale

    def ensemble_sizes(self) -> dict[int, int]:
        """``{width: n_networks}``: ``min(n_networks, network_budget // N)`` per width."""
        if self.ensemble is None:
            return {}
        e = self.ensemble
        cap = (lambda N: e.network_budget // N) if e.network_budget else (lambda N: e.n_networks)
        return {N: int(max(1000, min(e.n_networks, cap(N)))) for N in e.widths}

    def rg_cutoffs(self) -> np.ndarray:
        g = self.theory.rg_cutoffs or CutoffGrid(start=0.5, stop=10.0, num=11)
        if g.stop <= g.start:
            raise SpecError(f"theory.rg_cutoffs: stop ({g.stop}) must exceed start ({g.start})")
        return np.geomspace(g.start, g.stop, g.num)

    def coupling_form(self, name: str | None = None, d_in: int | None = None) -> CouplingForm:
        """The coupling-form object for ``theory.form`` (or ``name``)."""
        return coupling_form(name or self.theory.form, d_in or self.architecture.d_in)


def _override(model: BaseModel, **values) -> BaseModel:
    """``model`` with the given fields replaced, skipping the ones that are None."""
    return model.model_copy(update={k: v for k, v in values.items() if v is not None})


# --------------------------------------------------------------------------- loading
def _one_line(err: ValidationError, source: str) -> str:
    """The first pydantic error as ``source: field = value: what is allowed``."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "missing":
        return f"{source}: missing required field {loc!r}"
    if e["type"] == "extra_forbidden":
        return f"{source}: unknown field {loc!r} (value {e['input']!r}); check the spelling"
    if e["type"] == "literal_error":
        allowed = msg.removeprefix("Input should be ")
        return f"{source}: {loc} = {e['input']!r} is not allowed; allowed: {allowed}"
    return f"{source}: {loc} = {e['input']!r}: {msg}"


def parse_spec(data: dict, source: str = "<spec>") -> Spec:
    """Validate a spec given as a dict (e.g. from ``tomllib``); SpecError on any problem."""
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_one_line(err, source)) from None
    try:
        arch = spec.architecture_for()
        spec.inputs_for(arch)
        for d in spec.theory.dimensions or ():
            spec.architecture_for(d)
    except (ValueError, TypeError) as err:
        raise SpecError(f"{source}: architecture: {err}") from None
    if spec.inference is not None and spec.ensemble is not None:
        widths = spec.ensemble.widths
        if spec.inference.width not in widths:
            raise SpecError(
                f"{source}: inference.width = {spec.inference.width} is not among "
                f"ensemble.widths {widths}"
            )
    for name, scale in spec.scale.items():
        if scale.inference_width is not None and spec.ensemble is not None:
            widths = scale.widths or spec.ensemble.widths
            if scale.inference_width not in widths:
                raise SpecError(
                    f"{source}: scale.{name}.inference_width = {scale.inference_width} is not "
                    f"among the widths {widths}"
                )
    if spec.ensemble is not None and spec.ensemble.network_budget is not None:
        if not math.isfinite(spec.ensemble.network_budget):
            raise SpecError(f"{source}: ensemble.network_budget must be finite")
    _check_training(spec, source)
    if spec.study == "deep":
        _check_deep_study(spec, source)
    if spec.deep is not None:
        _check_deep(spec, source)
    return spec


def _check_deep_study(spec: Spec, source: str) -> None:
    """``study = "deep"`` measures with the last layer's kernel: it needs an ``[ensemble]``
    table whose estimator keeps the kernel."""
    if spec.ensemble is None:
        raise SpecError(f"{source}: study 'deep' needs an [ensemble] table")
    if spec.ensemble.estimator == "outputs":
        raise SpecError(
            f"{source}: ensemble.estimator = 'outputs': the deep study measures with the "
            "kernel estimator; set 'kernel' (or 'both')"
        )


def _check_training(spec: Spec, source: str) -> None:
    """The ``[training]`` table: present for ``study = "training"``, 1-d inputs, and snapshots
    that fit the steps at every scale."""
    if spec.study == "training" and (spec.training is None or spec.ensemble is None):
        missing = "[training]" if spec.training is None else "[ensemble]"
        raise SpecError(f"{source}: study 'training' needs a {missing} table")
    if spec.training is None:
        return
    if spec.architecture.d_in != 1:
        raise SpecError(
            f"{source}: training: the regression set y = sin(k x) is 1-d; architecture.d_in "
            f"must be 1, got {spec.architecture.d_in}"
        )
    for name in spec.scale:
        try:
            spec.at_scale(name)
        except ValidationError as err:
            raise SpecError(_one_line(err, f"{source}: scale.{name}")) from None


def _check_deep(spec: Spec, source: str) -> None:
    """The ``[deep]`` table against the rest of the spec, at every scale (one-line errors)."""
    labels = [spec.deep.label] + [c.label for c in spec.deep.cases]
    if len(set(labels)) != len(labels):
        raise SpecError(f"{source}: deep.cases: labels must be distinct, got {labels}")
    for i, case in enumerate(spec.deep.cases):
        try:
            deep_architecture(spec, case.label)
        except (ValueError, TypeError) as err:
            raise SpecError(f"{source}: deep.cases.{i}: {err}") from None
    for scale in ("default", *spec.scale):
        s = spec.at_scale(scale)
        where = "" if scale == "default" else f" (scale {scale})"
        widths = s.ensemble.widths if s.ensemble is not None else []
        if s.deep.growth_width is not None and s.deep.growth_width not in widths:
            raise SpecError(f"{source}: deep.growth_width = {s.deep.growth_width} is not among "
                            f"the widths {widths}{where}")  # fmt: skip
        if s.inference is not None and s.architecture.depth not in s.deep.depths:
            raise SpecError(
                f"{source}: architecture.depth = {s.architecture.depth} (the depth of the "
                f"coupling posteriors) is not among the deep depths {s.deep.depths}{where}"
            )


def deep_architecture(spec: Spec, label: str | None = None, depth: int | None = None) -> MLP:
    """The architecture of ``[deep]`` case ``label`` (None: ``[architecture]`` itself) at
    ``depth`` (None: the spec's)."""
    deep = spec.deep or DeepSpec()
    scales = {}
    if label is not None and label != deep.label:
        case = next((c for c in deep.cases if c.label == label), None)
        if case is None:
            raise ValueError(f"no deep case {label!r}; cases: {deep.label}, "
                             f"{', '.join(c.label for c in deep.cases)}")  # fmt: skip
        scales = case.model_dump(exclude={"label"}, exclude_none=True)
    return spec.architecture_for(depth=depth, **scales)


def resolve_spec(name_or_path) -> Path:
    """The TOML file of a spec: a path to a file, or the name of a zoo spec."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name.removesuffix(".toml")
    bundled = zoo_spec_path(name)
    if path.parent in (Path("."), Path("models")) and bundled.is_file():
        return bundled
    raise SpecError(
        f"no spec file at {str(name_or_path)!r} and no zoo spec of that name (zoo: "
        f"{', '.join(ZOO)})"
    )


def load_spec(name_or_path) -> Spec:
    """Read and validate a spec: a zoo name (``"coupling_relu"``) or a TOML file's path.

    Raises:
        SpecError: one line naming the file, the field, the value and what is allowed
            (missing file, malformed TOML, unknown architecture, cutoff <= 0, width 0, ...).

    Example:
        >>> spec = load_spec("coupling_erf")           # or load_spec("my_specs/erf.toml")
        >>> spec.study, spec.architecture_for(), spec.ensemble_sizes()
    """
    path = resolve_spec(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: malformed TOML: {err}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text (UTF-8) TOML file") from None
    return parse_spec(data, spec_display_name(path))


def spec_display_name(path: Path) -> str:
    """``models/<name>.toml`` for a zoo spec (wherever the package is installed), else the path."""
    try:
        if path.resolve() == zoo_spec_path(path.stem).resolve():
            return f"models/{path.name}"
    except OSError:
        pass
    return str(path)
