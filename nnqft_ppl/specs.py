"""Declarative study specs (TOML) for the model zoo in ``models/``, validated with pydantic.

A spec names a *study* (what to measure and claim), an architecture, its inputs, the ensembles
(widths and sizes), the theory settings (cutoffs, coupling form, held-out inputs) and, when it
names a likelihood, the NumPyro inference. Sizes come at named scales: ``default`` (what
``nnqft reproduce`` runs in minutes) and ``paper`` (1e6 networks per width); a spec may add
more (e.g. ``test``), each a partial override of the ensemble / theory / inference tables.

Every error is one line naming the field, the value and what is allowed::

    >>> spec = load_spec("models/falloff_relu.toml")
    >>> arch = spec.architecture(); X = spec.inputs(arch)
    >>> spec.ensemble_sizes("default")          # {width: n_networks}
    >>> idata = spec.infer(stats)                # nq.infer with the spec's likelihood/method

``models/template.toml`` documents every field line by line.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .architectures import MLP, ErfNet, GaussNet, ReLUNet
from .couplings import Constant, CouplingForm, NonLocal, Polynomial, RadialPolynomial, Sextic
from .presets import CENTRED_INPUTS, POSITIVE_INPUTS

__all__ = ["Spec", "SpecError", "load_spec", "parse_spec", "STUDIES", "FORMS"]

STUDIES = ("falloff", "coupling", "rg", "sixpoint", "symmetry")
FORMS = ("constant", "radial", "polynomial", "nonlocal", "sextic")
ARCHITECTURES = {"gauss": GaussNet, "erf": ErfNet, "relu": ReLUNet, "mlp": MLP}


class SpecError(ValueError):
    """A spec that cannot be loaded; the message is one line naming the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArchitectureSpec(_Strict):
    """``[architecture]``: kind and scales (None = the SPEC defaults)."""

    kind: Literal["gauss", "erf", "relu", "mlp"]
    d_in: int = Field(1, ge=1, le=3)
    depth: int = Field(1, ge=1)
    activation: Literal["erf", "relu", "tanh"] | None = None
    sw0: float = Field(1.0, ge=0)
    sb0: float | None = Field(None, ge=0)
    sw1: float = Field(1.0, ge=0)
    sb1: float | None = Field(None, ge=0)


class InputsSpec(_Strict):
    """``[inputs]``: ``preset`` ("paper": the paper's 6 inputs, "positive": positive
    coordinates for any d) or explicit ``points``; all multiplied by ``scale``."""

    preset: Literal["paper", "positive"] | None = "paper"
    points: list[list[float]] | None = None
    scale: float = Field(1.0, gt=0)


class EnsembleSpec(_Strict):
    """``[ensemble]``: widths and sizes. ``n(N) = min(n_networks, network_budget // N)``."""

    widths: list[int] = Field(min_length=1)
    n_networks: int = Field(ge=1000)
    network_budget: int | None = Field(None, ge=1000)
    seed: int = Field(0, ge=0)
    n_batches: int = Field(200, ge=10)
    max_order: Literal[2, 4, 6, 8] = 6

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
    form: Literal["constant", "radial", "polynomial", "nonlocal", "sextic"] = "constant"
    forms: list[Literal["constant", "radial", "polynomial", "nonlocal"]] = ["constant", "radial"]
    rg_cutoffs: CutoffGrid | None = None
    dimensions: list[int] | None = None
    heldout_scale: float | None = Field(None, gt=0)
    input_scales: list[float] | None = None
    oracle_width: int | None = Field(None, ge=1)
    error_networks: int = Field(1_000_000, ge=1000)

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
    method: Literal["nuts", "svi"] = "nuts"
    width: int = Field(ge=1)
    num_chains: int = Field(4, ge=1)
    num_warmup: int = Field(500, ge=10)
    num_samples: int = Field(1000, ge=10)
    seed: int = Field(0, ge=0)


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

    @field_validator("widths")
    @classmethod
    def _positive(cls, widths):
        return EnsembleSpec._positive(widths) if widths is not None else None


class Spec(_Strict):
    """One study of the zoo (see ``models/template.toml``)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    study: Literal["falloff", "coupling", "rg", "sixpoint", "symmetry"]
    description: str = ""
    architecture: ArchitectureSpec
    inputs: InputsSpec = InputsSpec()
    ensemble: EnsembleSpec | None = None
    theory: TheorySpec = TheorySpec()
    inference: InferenceSpec | None = None
    claims: list[str] | None = None
    scale: dict[str, ScaleSpec] = {}

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
            ens = ens.model_copy(
                update={
                    k: v
                    for k, v in (
                        ("widths", o.widths),
                        ("n_networks", o.n_networks),
                        ("network_budget", o.network_budget),
                    )
                    if v is not None
                }
            )
            if o.network_budget is None and o.n_networks is not None and scale == "paper":
                ens = ens.model_copy(update={"network_budget": None})
        if o.dimensions is not None:
            theory = theory.model_copy(update={"dimensions": o.dimensions})
        if o.rg_num is not None and theory.rg_cutoffs is not None:
            grid = theory.rg_cutoffs.model_copy(update={"num": o.rg_num})
            theory = theory.model_copy(update={"rg_cutoffs": grid})
        if inf is not None:
            inf = inf.model_copy(
                update={
                    k: v
                    for k, v in (
                        ("num_warmup", o.num_warmup),
                        ("num_samples", o.num_samples),
                        ("num_chains", o.num_chains),
                        ("width", o.inference_width),
                    )
                    if v is not None
                }
            )
        return self.model_copy(update={"ensemble": ens, "theory": theory, "inference": inf})

    def architecture_for(self, d_in: int | None = None) -> MLP:
        """The architecture object (``d_in`` overrides the spec's, for RG in d = 1, 2, 3)."""
        a = self.architecture
        kwargs = {"d_in": a.d_in if d_in is None else d_in, "sw0": a.sw0, "sw1": a.sw1}
        kwargs |= {k: v for k, v in (("sb0", a.sb0), ("sb1", a.sb1)) if v is not None}
        if a.kind == "mlp":
            return MLP(depth=a.depth, activation=a.activation or "tanh", **kwargs)
        return ARCHITECTURES[a.kind](**kwargs)

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
        elif spec.preset == "positive" or arch.activation == "relu":
            base = np.asarray(POSITIVE_INPUTS)[:, None]
            X = base * (1 + 0.3 * np.arange(arch.d_in))[None, :]
        else:
            X = np.repeat(np.asarray(CENTRED_INPUTS)[:, None], arch.d_in, axis=1)
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

    def coupling_form(self, name: str | None = None, d_in: int = 1) -> CouplingForm:
        """The coupling-form object for ``theory.form`` (or ``name``)."""
        name = name or self.theory.form
        return {
            "constant": Constant,
            "radial": lambda: RadialPolynomial((0, 2)),
            "polynomial": lambda: Polynomial(degree=2, d_in=d_in),
            "nonlocal": NonLocal,
            "sextic": Sextic,
        }[name]()

    # ----------------------------------------------------------------- NumPyro
    def numpyro_model(self, stats):
        """``(model, kwargs)``: the spec's correlator likelihood as a NumPyro model.

        ``numpyro.infer.MCMC(NUTS(model)).run(key, **kwargs)`` samples the couplings of
        ``theory.form`` given the measured ``stats`` (``nq.correlators(...)``).
        """
        from .likelihoods import correlator_data, correlator_model

        data = correlator_data(stats, form=self.coupling_form(), cutoff=self.theory.cutoff)
        return correlator_model, {"data": data}

    def infer(self, stats, likelihood: str | None = None, progress: bool = False):
        """``nq.infer`` with the spec's form, cutoff, likelihood and sampler settings."""
        from .inference import infer

        if self.inference is None:
            raise SpecError(f"spec {self.name!r} names no likelihood ([inference] is missing)")
        inf = self.inference
        return infer(
            stats,
            form=self.coupling_form(),
            likelihood=likelihood or inf.likelihoods[0],
            method=inf.method,
            cutoff=self.theory.cutoff,
            seed=inf.seed,
            num_chains=inf.num_chains,
            num_warmup=inf.num_warmup,
            num_samples=inf.num_samples,
            progress=progress,
        )


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
    return spec


def load_spec(path) -> Spec:
    """Read and validate a TOML spec (``models/*.toml``).

    Raises:
        SpecError: one line naming the file, the field, the value and what is allowed
            (missing file, malformed TOML, unknown architecture, cutoff <= 0, width 0, ...).

    Example:
        >>> spec = load_spec("models/coupling_erf.toml")
        >>> spec.study, spec.architecture_for(), spec.ensemble_sizes()
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no spec file at {str(path)!r}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: malformed TOML: {err}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text (UTF-8) TOML file") from None
    return parse_spec(data, str(path))
