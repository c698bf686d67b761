"""What a study produces and how a finished spec is stored: typed, xarray all the way down.

A study returns a :class:`StudyResult` (tables, claims, posteriors, notes). The runner stores one
:class:`SpecResult` per finished spec as a DataTree (``DIR/results/<spec>.zarr``): scalar
attributes, the claims as a table over ``claim``, the notes over ``note``, the ensemble sizes
over ``width``, the posterior files over ``posterior`` and each study table under ``tables/``.
The report is rebuilt from these stores alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import xarray as xr

from ..core.storage import open_store, write_store

__all__ = [
    "Claim",
    "StudyResult",
    "SpecResult",
    "result_path",
    "load_result",
    "fmt",
    "STATUSES",
    "z_claim",
    "exact_claim",
    "unresolved_claim",
]

#: A claim passes, fails, or the data cannot decide it (no power at this size).
STATUSES = ("PASS", "FAIL", "UNRESOLVED")


def fmt(value: float, error: float | None = None) -> str:
    """``0.0521 ± 0.028`` (or just the value when the error is 0 / NaN)."""
    if value is None or not np.isfinite(value):
        return "n/a"
    if error is None or not np.isfinite(error) or error == 0:
        return f"{value:.4g}"
    return f"{value:.4g} ± {error:.2g}"


@dataclass
class Claim:
    """One checkable statement, with what it would take to fail.

    Attributes:
        key, title: identity and the statement in words.
        measured, error: the measured value and its standard error (NaN when exact).
        reference, reference_label: what it is compared with ("" for no reference value).
        rule: the decision rule in words (e.g. ``"|z| < 3"``).
        status: ``"PASS"``, ``"FAIL"`` or ``"UNRESOLVED"`` (no power at this size).
        z: ``(measured - reference) / error`` where that is the test statistic, else NaN.
        resolution: the smallest deviation the data could have detected (3 standard errors),
            in the units of ``effect``.
        effect, effect_label: the size of what is under test (e.g. the non-Gaussian part, the
            difference between rival predictions) and its name.
        needed: networks needed to resolve an UNRESOLVED claim (NaN otherwise).
        details: further numbers.
    """

    key: str
    title: str
    measured: float
    error: float
    reference: float
    reference_label: str
    rule: str
    status: str
    z: float = np.nan
    resolution: float = np.nan
    effect: float = np.nan
    effect_label: str = ""
    needed: float = np.nan
    details: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def describe(self) -> str:
        """The claim's numbers in words (no "vs 0", z with its rule, the power)."""
        if np.isfinite(self.measured):
            parts = [fmt(self.measured, self.error)]
            if self.reference_label:
                parts[0] += f" vs {self.reference_label} {fmt(self.reference)}"
            if np.isfinite(self.z):
                parts.append(f"z = {self.z:.2f} (rule {self.rule})")
            else:
                parts.append(f"rule: {self.rule}")
        else:  # no measurement decides it: say why
            parts = [self.details or "no measurement", f"rule: {self.rule}"]
        if np.isfinite(self.effect):
            parts.append(f"resolution {fmt(self.resolution)} (3 sigma) vs {self.effect_label} "
                         f"{fmt(abs(self.effect))}")  # fmt: skip
        if self.status == "UNRESOLVED":
            needs = f"; needs about {self.needed:.2g} networks" if np.isfinite(self.needed) else ""
            parts.append(f"not resolved at this scale{needs}")
        return "; ".join(parts)

    def line(self) -> str:
        return f"{self.status}: {self.title}: {self.describe()}"


def z_claim(
    key: str,
    title: str,
    measured: float,
    error: float,
    reference: float,
    reference_label: str,
    *,
    k: float = 3.0,
    effect: float = np.nan,
    effect_label: str = "",
    n_networks: float = np.nan,
    details: str = "",
    require: bool = True,
) -> Claim:
    """A claim that ``measured`` agrees with ``reference`` within ``k`` standard errors.

    With an ``effect`` (the size of what the agreement is meant to show, e.g. the non-Gaussian
    part of a correlator or the gap between rival predictions): a claim that would PASS although
    ``k * error`` is not smaller than the effect is UNRESOLVED (the data could not have told the
    difference), with the networks needed (``n_networks`` scaled by ``(k error / effect)^2``).
    ``|z| >= k`` is a FAIL whatever the power: the data reject the reference. ``require``: a
    further condition of the rule (e.g. the sampler converged, stated in ``details``); when it
    is False a claim that would PASS is a FAIL.
    """
    z = (measured - reference) / error if error > 0 else np.nan
    resolution = k * error
    status = "PASS" if np.isfinite(z) and abs(z) < k else "FAIL"
    needed = np.nan
    if status == "PASS" and np.isfinite(effect) and not resolution < abs(effect):
        status = "UNRESOLVED"
        needed = networks_needed(n_networks, error, effect, k)
    if status == "PASS" and not require:
        status = "FAIL"
    return Claim(key, title, float(measured), float(error), float(reference), reference_label,
                 f"|z| < {k:g}", status, float(z), float(resolution), float(effect),
                 effect_label, float(needed), details)  # fmt: skip


def networks_needed(n_networks, error, effect, k: float = 3.0):
    """Networks that would bring the ``k``-sigma resolution of a measurement with ``error``
    from ``n_networks`` networks below ``|effect|`` (errors fall as 1/sqrt(n); 20% margin).
    Arrays broadcast."""
    return n_networks * (k * error / np.abs(effect)) ** 2 * 1.2


def exact_claim(
    key: str,
    title: str,
    measured: float,
    reference: float,
    reference_label: str,
    tolerance: float,
    rule: str,
    details: str = "",
) -> Claim:
    """A noise-free claim: ``|measured - reference| < tolerance`` (quadrature accuracy)."""
    passed = bool(np.isfinite(measured) and abs(measured - reference) < tolerance)
    return Claim(key, title, float(measured), np.nan, float(reference), reference_label, rule,
                 "PASS" if passed else "FAIL", details=details)  # fmt: skip


def unresolved_claim(key: str, title: str, rule: str, why: str, needed: float = np.nan) -> Claim:
    """A claim the data cannot decide (no test: e.g. it holds by construction)."""
    return Claim(key, title, np.nan, np.nan, np.nan, "", rule, "UNRESOLVED",
                 needed=float(needed), details=why)  # fmt: skip


@dataclass
class StudyResult:
    """Tables over named dims, claims, posteriors and notes of one spec."""

    tables: dict[str, xr.Dataset] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    posteriors: dict[str, xr.DataTree] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


_CLAIM_FIELDS = [f.name for f in fields(Claim)]


@dataclass
class SpecResult:
    """A finished spec as stored: what ran, how, and what it found.

    Attributes:
        name, title, study, description: from the spec.
        scale: the size scale it ran at; spec_file: the spec's file (``models/<name>.toml``
            for zoo specs); spec_toml: its text; spec_hash: identity of the resolved spec.
        command: the command that made it; seconds: its run time.
        ensemble_sizes: ``{width: n_networks}``.
        claims, notes, tables: the study's; posteriors: ``{key: path relative to the folder}``.
    """

    name: str
    title: str
    study: str
    description: str
    scale: str
    spec_file: str
    spec_toml: str
    spec_hash: str
    command: str
    seconds: float
    ensemble_sizes: dict[int, int]
    claims: list[Claim]
    notes: list[str]
    posteriors: dict[str, str]
    tables: dict[str, xr.Dataset]

    _SCALARS = (
        "name",
        "title",
        "study",
        "description",
        "scale",
        "spec_file",
        "spec_toml",
        "spec_hash",
        "command",
        "seconds",
    )

    def to_tree(self) -> xr.DataTree:
        attrs = {k: getattr(self, k) for k in self._SCALARS}
        tree = xr.DataTree(dataset=xr.Dataset(attrs=attrs))
        tree["claims"] = xr.DataTree(
            dataset=xr.Dataset(
                {k: ("claim", [getattr(c, k) for c in self.claims]) for k in _CLAIM_FIELDS}
            )
        )
        tree["notes"] = xr.DataTree(dataset=xr.Dataset({"note": ("note", list(self.notes))}))
        widths = list(self.ensemble_sizes)
        tree["ensemble_sizes"] = xr.DataTree(
            dataset=xr.Dataset(
                {"n_networks": ("width", [self.ensemble_sizes[w] for w in widths])},
                coords={"width": widths},
            )
        )
        tree["posteriors"] = xr.DataTree(
            dataset=xr.Dataset(
                {"path": ("posterior", list(self.posteriors.values()))},
                coords={"posterior": list(self.posteriors)},
            )
        )
        for name, table in self.tables.items():
            tree[f"tables/{name}"] = xr.DataTree(dataset=table)
        return tree

    @classmethod
    def from_tree(cls, tree: xr.DataTree) -> SpecResult:
        a = tree.attrs
        c = tree["claims"].to_dataset()
        n_claims = c.sizes.get("claim", 0)
        claims = [
            Claim(**{k: _plain(c[k].values[i]) for k in _CLAIM_FIELDS}) for i in range(n_claims)
        ]
        sizes = tree["ensemble_sizes"].to_dataset()
        posteriors = tree["posteriors"].to_dataset()
        tables = tree["tables"].children if "tables" in tree.children else {}
        return cls(
            **{k: _plain(a[k]) for k in cls._SCALARS},
            ensemble_sizes={
                int(w): int(n)
                for w, n in zip(sizes.width.values, sizes.n_networks.values, strict=True)
            },
            claims=claims,
            notes=[str(n) for n in tree["notes"].to_dataset().get("note", xr.DataArray([])).values],
            posteriors={
                str(k): str(p)
                for k, p in zip(posteriors.posterior.values, posteriors.path.values, strict=True)
            },
            tables={name: node.to_dataset() for name, node in tables.items()},
        )

    def save(self, out) -> Path:
        """Write to ``out/results/<name>.zarr`` atomically (a spec counts as finished then)."""
        return write_store(self.to_tree(), result_path(out, self.name))


def _plain(value):
    """Stored values as plain Python (NumPy scalars and bytes give str, float, bool)."""
    value = value.item() if hasattr(value, "item") else value
    return value.decode() if isinstance(value, bytes) else value


def result_path(out, name: str) -> Path:
    """Where the result of spec ``name`` is stored under the output folder ``out``."""
    return Path(out) / "results" / f"{name}.zarr"


def load_result(path) -> SpecResult:
    """A stored spec result (see :class:`SpecResult`)."""
    return SpecResult.from_tree(open_store(path, tree=True))
