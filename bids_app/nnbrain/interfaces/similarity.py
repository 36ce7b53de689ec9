"""Layer x ROI similarity: the spec's RSA, CKA and neural similarity score measures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.measures import Measure


@dataclass(frozen=True)
class ContinuousDesign:
    """What the tests of a continuous design need besides the rows' values."""

    blocks: np.ndarray
    """Block of every row, shape (n_rows,)."""
    played: np.ndarray
    """Stimulus played in each block slot, shape (n_slots,)."""
    slots: list[list[np.ndarray]]
    """Per network, per layer: (n_stimuli, n_slots, n_rows, n_units) features of every stimulus
    at every slot (:func:`nnbrain.interfaces.continuous.slot_features`)."""

    @classmethod
    def load(cls, rows: Path, slot_files: list[str], layers: list[list[str]]) -> ContinuousDesign:
        """From ROITimeseries rows JSON and one AlignFeatures slots npz per network."""
        slots, played = [], None
        for path, names in zip(slot_files, layers):
            with np.load(path) as npz:
                slots.append([npz[name] for name in names])
                played = npz["played"]
        blocks = np.asarray(json.loads(rows.read_text())["block"])
        return cls(blocks=blocks, played=np.asarray(played), slots=slots)


TABLE_COLUMNS = ["model", "weights", "layer", "layer_name", "roi", "roi_name", "statistic",
                 "p_value", "p_fwe", "ci_low", "ci_high", "n_stimuli", "n_units", "n_voxels"]
#: Coverage of the bootstrap confidence intervals.
CI_LEVEL = 0.95


def _rsa_results(brain_rdm: np.ndarray, layer_rdms: list[np.ndarray], measure: Measure,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Statistic, p, p_fwe (each (k,)) and bootstrap evaluations (n_bootstrap, k) of one ROI RDM
    against the layer RDMs of several networks.

    ``layer_rdms`` holds one (k_i, m) stack per network: each is one permutation family; the
    bootstrap samples are the same for all (one call over all k candidates).
    """
    from nnbrain.core.bootstrap import bootstrap_stimuli
    from nnbrain.core.compare import compare_rdms
    from nnbrain.core.permutation import mantel_test_batch

    stats, ps, fwes = [], [], []
    for rdms in layer_rdms:
        if measure.permutations:
            res = mantel_test_batch(brain_rdm, rdms, measure.comparator, measure.permutations,
                                    seed)
            stats.append(res.statistic)
            ps.append(res.p_value)
            fwes.append(res.p_fwe)
        else:
            stats.append(np.asarray(compare_rdms(rdms, brain_rdm[None], measure.comparator),
                                    dtype=np.float64).reshape(-1))
            ps.append(np.full(len(rdms), np.nan))
            fwes.append(np.full(len(rdms), np.nan))
    boot = (bootstrap_stimuli(np.concatenate(layer_rdms), brain_rdm[None], measure.comparator,
                              measure.bootstrap, seed) if measure.bootstrap else None)
    return np.concatenate(stats), np.concatenate(ps), np.concatenate(fwes), boot


def _cka_results(pattern: np.ndarray, layers: list[list[np.ndarray]], measure: Measure,
                 seed: int, design: ContinuousDesign | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Statistic, p, p_fwe (each (k,)) and bootstrap evaluations (n_bootstrap, k) of one ROI's
    patterns against the layer activations of several networks (one list per network: one
    permutation family each; one bootstrap over all k candidates). With a continuous
    ``design`` the test re-assigns stimuli to block slots
    (:func:`nnbrain.core.permutation.cka_assignment_test`) and the bootstrap resamples whole
    blocks."""
    from nnbrain.core.bootstrap import bootstrap_cka_stimuli
    from nnbrain.core.permutation import cka_assignment_test, cka_permutation_batch

    if design is None:
        results = [cka_permutation_batch(pattern, acts, measure.unbiased,
                                         measure.permutations or 0, seed, kernel=measure.kernel,
                                         sigma=measure.sigma)
                   for acts in layers]
    else:
        results = [cka_assignment_test(pattern, slots, design.played, measure.unbiased,
                                       measure.permutations or 0, seed, measure.kernel,
                                       measure.sigma)
                   for slots in design.slots]
    blocks = None if design is None else design.blocks
    boot = (bootstrap_cka_stimuli(pattern, [a for acts in layers for a in acts], measure.kernel,
                                  measure.unbiased, measure.sigma, measure.bootstrap, seed,
                                  blocks=blocks)
            if measure.bootstrap else None)
    return (np.concatenate([r.statistic for r in results]),
            np.concatenate([r.p_value for r in results]),
            np.concatenate([r.p_fwe for r in results]), boot)


def similarity_tables(patterns: dict[str, np.ndarray], activations: list[tuple[dict, dict]],
                      measures: tuple[Measure, ...], seed: int,
                      design: ContinuousDesign | None = None) -> dict[str, list[dict]]:
    """RSA and CKA rows for every measure x ROI x (model, weights) x layer.

    Parameters
    ----------
    patterns : dict of str to array of shape (n_stimuli, n_voxels)
        ROI name -> stimulus patterns.
    activations : list of (meta, layers)
        ``meta`` has ``model`` and ``weights``; ``layers`` maps layer name to an array of shape
        (n_stimuli, n_units), rows in the same stimulus order as ``patterns``.
    measures : tuple of Measure
        The rsa and cka measures (nss rows come from :func:`nss_rows`).
    seed : int
        Seed of the permutations (shared across the layers of one network: a max-statistic
        family) and of the bootstrap samples of the stimuli (the same samples for every layer,
        network and measure).
    design : ContinuousDesign, optional
        Continuous designs (rows are scans): the stimuli are re-assigned to the block slots for
        the tests and whole blocks are resampled for the CIs. Only cka measures apply.

    Returns
    -------
    dict of measure label to a list of row dictionaries (:data:`TABLE_COLUMNS`); ``ci_low`` and
    ``ci_high`` bound the 95% percentile bootstrap interval over stimuli (blocks for a
    continuous ``design``; NaN without bootstrap). The row count column is ``n_stimuli``, or
    ``n_scans`` with a ``design``.
    """
    from nnbrain.core.bootstrap import percentile_ci
    from nnbrain.core.rdm import compute_rdm
    from nnbrain.utils.bids import bids_label

    rows: dict[str, list[dict]] = {m.label: [] for m in measures if m.kind != "nss"}
    count = "n_stimuli" if design is None else "n_scans"
    if design is not None and any(m.kind == "rsa" for m in measures):
        raise ValueError("rsa measures compare stimulus RDMs; a continuous design has none")
    pairs = [(meta, name, acts) for meta, layers in activations for name, acts in layers.items()]
    layer_rdms = {method: [np.stack([compute_rdm(a, method) for a in layers.values()])
                           for _, layers in activations]
                  for method in dict.fromkeys(m.rdm for m in measures if m.kind == "rsa")}
    for roi, pattern in patterns.items():
        for measure in measures:
            if measure.kind == "rsa":
                stat, p, p_fwe, boot = _rsa_results(compute_rdm(pattern, measure.rdm),
                                                    layer_rdms[measure.rdm], measure, seed)
            elif measure.kind == "cka":
                stat, p, p_fwe, boot = _cka_results(
                    pattern, [list(layers.values()) for _, layers in activations], measure, seed,
                    design)
            else:
                continue
            nan = np.full(len(pairs), np.nan)
            low, high = percentile_ci(boot, CI_LEVEL) if boot is not None else (nan, nan)
            for k, (meta, name, acts) in enumerate(pairs):
                rows[measure.label].append({
                    "model": bids_label(meta["model"]), "weights": bids_label(meta["weights"]),
                    "layer": bids_label(name), "layer_name": name, "roi": bids_label(roi),
                    "roi_name": roi, "statistic": float(stat[k]), "p_value": float(p[k]),
                    "p_fwe": float(p_fwe[k]), "ci_low": float(low[k]),
                    "ci_high": float(high[k]), count: int(pattern.shape[0]),
                    "n_units": int(acts.shape[1]), "n_voxels": int(pattern.shape[1]),
                })
    return rows


def nss_rows(cka_rows: list[dict], sources: dict[tuple[str, str], tuple[str, str]],
             reference: str = "") -> list[dict]:
    """Neural similarity score rows (the 7T study's eq. 3) from one subject's CKA rows.

    For every model, the trained and checkpoint weight sources are scored against its random
    reference sources (several seeds: per-seed scores, then their mean and SD; see
    :func:`nnbrain.core.scores.neural_similarity_score`). Models without both give no rows.

    Parameters
    ----------
    cka_rows : list of dict
        Rows of one cka measure of :func:`similarity_tables`.
    sources : dict of (model label, weights label) to (kind, group)
        ``trained``, ``checkpoint`` or ``random`` per weight source, and the spec entry label it
        was expanded from (``random`` for seeds ``random1``, ``random2``).
    reference : str
        Weights or group label of the untrained reference; empty: every random source.

    Returns
    -------
    list of dict with :data:`TABLE_COLUMNS` (``statistic`` = score; p-values and CI ``nan``)
    plus ``score_sd`` (over random seeds) and ``n_seeds``.
    """
    import pandas as pd

    from nnbrain.core.scores import neural_similarity_score

    table = pd.DataFrame(cka_rows)
    rows: list[dict] = []
    for model, part in table.groupby("model", sort=False):
        weights = list(dict.fromkeys(part["weights"]))
        trained = [w for w in weights if sources[(model, w)][0] != "random"]
        random = [w for w in weights if sources[(model, w)][0] == "random"
                  and (not reference or reference in (w, sources[(model, w)][1]))]
        if not trained or not random:
            continue
        rois = list(dict.fromkeys(part["roi"]))
        layers = list(dict.fromkeys(part["layer"]))

        def grid(w: str, part=part, rois=rois, layers=layers) -> np.ndarray:
            sub = part[part["weights"] == w].pivot(index="roi", columns="layer",
                                                   values="statistic")
            return sub.loc[rois, layers].to_numpy()

        result = neural_similarity_score(np.stack([grid(w) for w in trained]),
                                         np.stack([grid(w) for w in random]))
        meta = part.drop_duplicates(["layer", "roi"]).set_index(["roi", "layer"])
        for m, w in enumerate(trained):
            for i, roi in enumerate(rois):
                for j, layer in enumerate(layers):
                    info = meta.loc[(roi, layer)]
                    rows.append({"model": model, "weights": w, "layer": layer,
                                 "layer_name": info["layer_name"], "roi": roi,
                                 "roi_name": info["roi_name"],
                                 "statistic": float(result.score[m, i, j]),
                                 "p_value": float("nan"), "p_fwe": float("nan"),
                                 "ci_low": float("nan"), "ci_high": float("nan"),
                                 **{c: int(info[c]) for c in ("n_stimuli", "n_scans")
                                    if c in info},
                                 "n_units": int(info["n_units"]),
                                 "n_voxels": int(info["n_voxels"]),
                                 "score_sd": float(result.score_sd[m, i, j]),
                                 "n_seeds": len(random)})
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    """Write rows as a BIDS TSV (tabs, header, ``n/a`` for missing)."""
    import pandas as pd

    columns = list(rows[0]) if rows else TABLE_COLUMNS
    pd.DataFrame(rows, columns=columns).to_csv(
        path, sep="\t", index=False, na_rep="n/a", float_format="%.10g")


class _SimilarityInputSpec(BaseInterfaceInputSpec):
    patterns = File(exists=True, mandatory=True, desc="npz of ROI patterns (ROIPatterns)")
    activations = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="npz of layer activations per (model, weights)")
    activation_metas = InputMultiObject(File(exists=True), mandatory=True,
                                        desc="JSON provenance per activations file")
    measures = traits.List(traits.Dict, mandatory=True,
                           desc="Measure.to_dict() of every measure, in spec order")
    weight_sources = traits.List(traits.Dict, mandatory=True,
                                 desc="model, weights, kind (trained/checkpoint/random) and "
                                      "group (spec entry label) of every weight source")
    seed = traits.Int(0, usedefault=True, desc="seed of the permutations and bootstrap samples")
    rows = traits.Either(None, File(exists=True), usedefault=True,
                         desc="continuous designs: JSON rows of ROITimeseries (the block of "
                              "every row); None: one row per stimulus")
    slots = traits.List(File(exists=True), usedefault=True,
                        desc="continuous designs: AlignFeatures slots npz per (model, weights), "
                             "in the order of activations")


class _SimilarityOutputSpec(TraitedSpec):
    tables = OutputMultiObject(File(exists=True),
                               desc="one TSV per measure, named <label>.tsv (an nss table is "
                                    "empty without random weights)")
    brain_rdms = File(exists=True, desc="npz: condensed RDM per '<rdm method>/<ROI>'")


class LayerROISimilarity(SimpleInterface):
    """Every spec measure (RSA with Mantel tests, CKA with permutation or randomization tests
    and bootstrap CIs, the neural similarity score) for every layer x ROI."""

    input_spec = _SimilarityInputSpec
    output_spec = _SimilarityOutputSpec

    def _run_interface(self, runtime):
        from nnbrain.core.rdm import compute_rdm
        from nnbrain.utils.bids import bids_label

        measures = tuple(Measure.from_dict(m) for m in self.inputs.measures)
        with np.load(self.inputs.patterns) as npz:
            patterns = {k: npz[k] for k in npz.files}
        activations = []
        for act_file, meta_file in zip(self.inputs.activations, self.inputs.activation_metas):
            meta = json.loads(Path(meta_file).read_text())
            with np.load(act_file) as npz:
                activations.append((meta, {k: npz[k] for k in meta["layers"]}))
        design = None
        if self.inputs.rows:
            design = ContinuousDesign.load(Path(self.inputs.rows), list(self.inputs.slots),
                                           [m["layers"] for m, _ in activations])
        rows = similarity_tables(patterns, activations, measures, self.inputs.seed, design)
        sources = {(bids_label(s["model"]), bids_label(s["weights"])):
                   (s["kind"], bids_label(s["group"])) for s in self.inputs.weight_sources}
        for m in measures:
            if m.kind == "nss":
                rows[m.label] = nss_rows(rows[m.cka], sources, bids_label(m.reference)
                                         if m.reference else "")
        cwd = Path(runtime.cwd)
        tables = []
        for m in measures:
            write_table(rows[m.label], cwd / f"{m.label}.tsv")
            tables.append(str(cwd / f"{m.label}.tsv"))
        self._results["tables"] = tables
        np.savez(cwd / "brain_rdms.npz",
                 **{f"{method}/{roi}": compute_rdm(p, method) for roi, p in patterns.items()
                    for method in dict.fromkeys(m.rdm for m in measures if m.kind == "rsa")})
        self._results["brain_rdms"] = str(cwd / "brain_rdms.npz")
        return runtime
