"""The similarity measures a model spec selects (its ``measures`` mapping).

Each measure is labelled by its key, which becomes ``desc-<label>`` in file names::

    measures:
      rsa:    {measure: rsa, rdm: correlation, comparator: tau-a, permutations: 1000}
      cka:    {measure: cka, kernel: linear, estimator: unbiased}
      ckarbf: {measure: cka, kernel: rbf, estimator: unbiased, sigma: 1.0}
      nss:    {measure: nss, cka: ckarbf, reference: random}

Without ``measures`` the spec gets :data:`DEFAULT_MEASURES` (the same four). ``permutations``
defaults to ``--n-permutations``; ``bootstrap`` (samples over stimuli for the 95% CI) to 1000.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nnbrain.errors import DataError

#: Keys each measure kind takes (besides ``measure``).
_KEYS = {"rsa": ("rdm", "comparator", "permutations", "bootstrap"),
         "cka": ("kernel", "estimator", "sigma", "permutations", "bootstrap"),
         "nss": ("cka", "reference")}
#: Bootstrap samples over stimuli when the spec gives none.
DEFAULT_BOOTSTRAP = 1000


@dataclass(frozen=True)
class Measure:
    """One similarity measure of the spec.

    ``permutations`` is ``None`` until :func:`resolve_measures` fills in ``--n-permutations``.
    """

    label: str
    """Key in the spec and ``desc-<label>`` in file names."""
    kind: str
    """``rsa``, ``cka`` or ``nss``."""
    rdm: str = "correlation"
    """rsa: RDM dissimilarity (:mod:`nnbrain.core.rdm`)."""
    comparator: str = "tau-a"
    """rsa: RDM comparator (:mod:`nnbrain.core.compare`)."""
    kernel: str = "linear"
    """cka: ``linear`` or ``rbf``."""
    unbiased: bool = True
    """cka: unbiased HSIC estimator (Song et al. 2007)."""
    sigma: float = 1.0
    """cka rbf: bandwidth as a multiple of the median distance (the colab's ``threshold``)."""
    permutations: int | None = None
    """rsa, cka: stimulus-label permutations (0: no test)."""
    bootstrap: int = DEFAULT_BOOTSTRAP
    """rsa, cka: bootstrap samples over stimuli for the 95% CI (0: no CI)."""
    cka: str = ""
    """nss: label of the cka measure it scores."""
    reference: str = ""
    """nss: weights (or weights group) label of the untrained reference; empty: every random
    source of the model."""

    def parameters(self) -> dict[str, Any]:
        """The measure's parameters as sidecar keys."""
        if self.kind == "rsa":
            return {"RDM": self.rdm, "Comparator": self.comparator,
                    "Permutations": self.permutations, "BootstrapSamples": self.bootstrap}
        if self.kind == "cka":
            out: dict[str, Any] = {"Kernel": self.kernel,
                                   "Estimator": "unbiased HSIC (Song et al. 2007)"
                                   if self.unbiased else "biased HSIC (Gretton et al. 2005)",
                                   "Permutations": self.permutations,
                                   "BootstrapSamples": self.bootstrap}
            if self.kernel == "rbf":
                out["Sigma"] = self.sigma
                out["Bandwidth"] = ("exp(-d^2 / (2 sigma^2 median(d^2))), median over all "
                                    "n x n entries of the rows compared, the zero diagonal "
                                    "included (Kornblith et al. 2019 colab)")
            return out
        return {"CKA": self.cka, "Reference": self.reference or "every random-seed source"}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "rdm": self.rdm,
                "comparator": self.comparator, "kernel": self.kernel,
                "unbiased": self.unbiased, "sigma": self.sigma,
                "permutations": self.permutations, "bootstrap": self.bootstrap,
                "cka": self.cka, "reference": self.reference}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measure:
        return cls(data["label"], data["kind"], rdm=data["rdm"], comparator=data["comparator"],
                   kernel=data["kernel"], unbiased=data["unbiased"], sigma=data["sigma"],
                   permutations=data["permutations"], bootstrap=data["bootstrap"],
                   cka=data["cka"], reference=data["reference"])


#: The measures of a spec without ``measures``.
DEFAULT_MEASURES: tuple[Measure, ...] = (
    Measure("rsa", "rsa"),
    Measure("cka", "cka"),
    Measure("ckarbf", "cka", kernel="rbf"),
    Measure("nss", "nss", cka="ckarbf"),
)


def _measure(label: str, entry: Mapping[str, Any], path: Path) -> Measure:
    kind = entry["measure"]
    extra = [k for k in entry if k != "measure" and k not in _KEYS[kind]]
    if extra:
        raise DataError(f"measures.{label}: {extra[0]!r} does not apply to a {kind} measure; "
                        f"{kind} takes {', '.join(_KEYS[kind])}", path)
    if label.lower().endswith("mean"):
        raise DataError(f"measures.{label}: labels ending in 'Mean' (any case) are kept for the "
                        "group tables (desc-<label>Mean); rename it", path)
    values = {k: v for k, v in entry.items() if k != "measure"}
    if "estimator" in values:
        values["unbiased"] = values.pop("estimator") == "unbiased"
    if "sigma" in values:
        values["sigma"] = float(values["sigma"])
    return Measure(label, kind, **values)


def measures_from_document(document: Mapping[str, Any], path: Path,
                           design: str = "event") -> tuple[Measure, ...]:
    """The measures of a schema-valid spec document (defaults when it has none).

    A continuous design (rows are scans, not stimuli) takes no rsa measure: the defaults drop
    it, a spec that lists one is refused.

    Raises
    ------
    DataError
        A key that does not apply to its measure kind, an nss measure without a cka measure
        to score, or a label reserved for the group tables; the message names the key path.
    """
    entries = document.get("measures")
    if entries is None:
        return tuple(m for m in DEFAULT_MEASURES if design == "event" or m.kind != "rsa")
    measures = [_measure(label, entry, path) for label, entry in entries.items()]
    rsa = [m.label for m in measures if m.kind == "rsa"]
    if design == "continuous" and rsa:
        raise DataError(f"measures.{rsa[0]}: rsa compares RDMs between stimuli, which a "
                        "continuous design does not have; remove it (or use --design event)",
                        path)
    ckas = [m.label for m in measures if m.kind == "cka"]
    folded: dict[str, str] = {}
    for m in measures:
        if m.label.lower() in folded:
            raise DataError(f"measures: {folded[m.label.lower()]!r} and {m.label!r} differ only "
                            "in case; file names must differ on every file system", path)
        folded[m.label.lower()] = m.label
    resolved = []
    for m in measures:
        if m.kind == "nss":
            if not m.cka and not ckas:
                raise DataError(f"measures.{m.label}: an nss measure scores a cka measure; add "
                                "one (e.g. cka: {measure: cka, kernel: rbf})", path)
            if m.cka and m.cka not in ckas:
                raise DataError(f"measures.{m.label}.cka: {m.cka!r} is not a cka measure of "
                                f"this spec; cka measures: {', '.join(ckas) or 'none'}", path)
            m = replace(m, cka=m.cka or ckas[0])
        resolved.append(m)
    return tuple(resolved)


def check_references(measures: tuple[Measure, ...], weights: Mapping[str, list[tuple[str, str,
                                                                                   str]]],
                     path: Path) -> None:
    """Refuse an nss measure when no model has random weights, and an nss ``reference`` that
    names no random weights source of some model.

    Parameters
    ----------
    measures : tuple of Measure
    weights : dict of model name to list of (label, group, kind)
        Each model's weight sources (:class:`nnbrain.spec.WeightsSource` label, group, kind).
    path : Path
        The spec file (for the message).
    """
    for m in measures:
        if m.kind != "nss":
            continue
        if not any(kind == "random" for sources in weights.values() for _, _, kind in sources):
            raise DataError(f"measures.{m.label}: the neural similarity score compares each "
                            "network with its random-init weights, and no model has any; add "
                            "a random weights source (e.g. {label: random, seeds: [1, 2]}) or "
                            "drop the nss measure", path)
        if not m.reference:
            continue
        for model, sources in weights.items():
            matches = [kind for label, group, kind in sources if m.reference in (label, group)]
            if not matches:
                labels = sorted({x for label, group, _ in sources for x in (label, group)})
                raise DataError(f"measures.{m.label}.reference: {m.reference!r} is not a weights "
                                f"label of model {model!r}; its labels: {', '.join(labels)}",
                                path)
            if any(kind != "random" for kind in matches):
                raise DataError(f"measures.{m.label}.reference: {m.reference!r} of model "
                                f"{model!r} is not random-init weights; the neural similarity "
                                "score needs an untrained reference (a seed or seeds entry)",
                                path)


def resolve_measures(measures: tuple[Measure, ...], n_permutations: int) -> tuple[Measure, ...]:
    """Fill in ``--n-permutations`` where a measure gives none."""
    return tuple(m if m.permutations is not None or m.kind == "nss"
                 else replace(m, permutations=n_permutations) for m in measures)


def describe(measure: Measure, design: str = "event") -> str:
    """One line on what a measure's tables hold (for ``descriptions.tsv``)."""
    if measure.kind == "rsa":
        return (f"representational similarity analysis: {measure.comparator} between layer and "
                f"ROI RDMs ({measure.rdm} dissimilarity), Mantel permutation test")
    if measure.kind == "cka":
        text = (f"{measure.kernel} centered kernel alignment, "
                f"{'unbiased' if measure.unbiased else 'biased'} HSIC estimator")
        if measure.kernel == "rbf":
            text += f", bandwidth {measure.sigma:g} x median distance"
        return text + (", row-permutation test" if design == "event" else
                       ", randomization test over stimulus-to-block assignments")
    return (f"neural similarity score of the desc-{measure.cka} CKA: z-scored CKA of a trained "
            "network minus that of its random-init baseline (eq. 3 of the 7T study)")


def descriptions(measures: tuple[Measure, ...], design: str = "event") -> dict[str, str]:
    """``desc`` label -> description of every participant and group table of the measures."""
    out: dict[str, str] = {}
    for m in measures:
        out[m.label] = describe(m, design)
        out[f"{m.label}Mean"] = f"subject mean of desc-{m.label}"
    return out
