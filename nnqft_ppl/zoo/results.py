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

__all__ = ["Claim", "StudyResult", "SpecResult", "result_path", "load_result", "fmt"]


def fmt(value: float, error: float | None = None) -> str:
    """``1.234e-3 ± 5.6e-5`` (or just the value when the error is 0 / NaN)."""
    if error is None or not np.isfinite(error) or error == 0:
        return f"{value:.6g}"
    return f"{value:.4g} ± {error:.2g}"


@dataclass
class Claim:
    """One checkable statement: measured value with error, the reference, the rule, pass/fail.

    Example:
        >>> Claim("falloff_m4", "m_4 falls as 1/N", -0.98, 0.05, -1.0, "analytic",
        ...       "|slope + 1| < 3 sigma", True)
    """

    key: str
    title: str
    measured: float
    error: float
    reference: float
    reference_label: str
    rule: str
    passed: bool
    details: str = ""

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict}: {self.title}: measured {fmt(self.measured, self.error)} vs "
            f"{self.reference_label} {self.reference:.6g} ({self.rule})"
        )


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
