"""Layer x ROI similarity: RSA with Mantel tests and unbiased linear CKA with permutation tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.core.permutation import cka_permutation_batch, mantel_test_batch
from nnbrain.core.rdm import compute_rdm

TABLE_COLUMNS = ["model", "weights", "layer", "layer_name", "roi", "roi_name", "statistic",
                 "p_value", "p_fwe", "n_stimuli", "n_units", "n_voxels"]


def similarity_tables(patterns: dict[str, np.ndarray], activations: list[tuple[dict, dict]],
                      rdm_method: str, comparator: str, n_permutations: int,
                      seed: int) -> dict[str, list[dict]]:
    """RSA and CKA rows for every ROI x (model, weights) x layer.

    Parameters
    ----------
    patterns : dict of str to array of shape (n_stimuli, n_voxels)
        ROI name -> stimulus patterns.
    activations : list of (meta, layers)
        ``meta`` has ``model`` and ``weights``; ``layers`` maps layer name to an array of shape
        (n_stimuli, n_units), rows in the same stimulus order as ``patterns``.
    rdm_method, comparator : str
        RDM dissimilarity and RDM comparator for RSA.
    n_permutations, seed : int
        Permutations are shared across the layers of one network (max-statistic family).

    Returns
    -------
    dict with keys ``"rsa"`` and ``"cka"``: lists of row dictionaries (:data:`TABLE_COLUMNS`).
    """
    from nnbrain.utils.bids import bids_label

    rows: dict[str, list[dict]] = {"rsa": [], "cka": []}
    for roi, pattern in patterns.items():
        brain_rdm = compute_rdm(pattern, rdm_method)
        for meta, layers in activations:
            names = list(layers)
            layer_rdms = np.stack([compute_rdm(layers[n], rdm_method) for n in names])
            results = {
                "rsa": mantel_test_batch(brain_rdm, layer_rdms, comparator, n_permutations, seed),
                "cka": cka_permutation_batch(pattern, [layers[n] for n in names], True,
                                             n_permutations, seed),
            }
            for measure, res in results.items():
                for k, name in enumerate(names):
                    rows[measure].append({
                        "model": bids_label(meta["model"]), "weights": bids_label(meta["weights"]),
                        "layer": bids_label(name), "layer_name": name, "roi": bids_label(roi),
                        "roi_name": roi, "statistic": float(res.statistic[k]),
                        "p_value": float(res.p_value[k]), "p_fwe": float(res.p_fwe[k]),
                        "n_stimuli": int(pattern.shape[0]), "n_units": int(layers[name].shape[1]),
                        "n_voxels": int(pattern.shape[1]),
                    })
    return rows


def nss_rows(cka_rows: list[dict], kinds: dict[tuple[str, str], str]) -> list[dict]:
    """Neural similarity score rows (the 7T study's eq. 3) from one subject's CKA rows.

    For every model, the trained and checkpoint weight sources are scored against its random
    sources (several seeds: per-seed scores, then their mean and SD; see
    :func:`nnbrain.core.scores.neural_similarity_score`). Models without both kinds give no rows.

    Parameters
    ----------
    cka_rows : list of dict
        Rows of :func:`similarity_tables` ``["cka"]``.
    kinds : dict of (model label, weights label) to str
        ``trained``, ``checkpoint`` or ``random`` per weight source.

    Returns
    -------
    list of dict with :data:`TABLE_COLUMNS` (``statistic`` = score; p-values ``nan``) plus
    ``score_sd`` (over random seeds) and ``n_seeds``.
    """
    import pandas as pd

    from nnbrain.core.scores import neural_similarity_score

    table = pd.DataFrame(cka_rows)
    rows: list[dict] = []
    for model, part in table.groupby("model", sort=False):
        weights = list(dict.fromkeys(part["weights"]))
        trained = [w for w in weights if kinds[(model, w)] != "random"]
        random = [w for w in weights if kinds[(model, w)] == "random"]
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
                                 "n_stimuli": int(info["n_stimuli"]),
                                 "n_units": int(info["n_units"]),
                                 "n_voxels": int(info["n_voxels"]),
                                 "score_sd": float(result.score_sd[m, i, j]),
                                 "n_seeds": len(random)})
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    """Write rows as a BIDS TSV (tabs, header, ``n/a`` for missing)."""
    import pandas as pd

    extra = [c for c in (rows[0] if rows else {}) if c not in TABLE_COLUMNS]
    pd.DataFrame(rows, columns=TABLE_COLUMNS + extra).to_csv(
        path, sep="\t", index=False, na_rep="n/a", float_format="%.10g")


class _SimilarityInputSpec(BaseInterfaceInputSpec):
    patterns = File(exists=True, mandatory=True, desc="npz of ROI patterns (ROIPatterns)")
    activations = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="npz of layer activations per (model, weights)")
    activation_metas = InputMultiObject(File(exists=True), mandatory=True,
                                        desc="JSON provenance per activations file")
    rdm_method = traits.Str("correlation", usedefault=True, desc="RDM dissimilarity")
    comparator = traits.Str("spearman", usedefault=True, desc="RDM comparator")
    n_permutations = traits.Int(1000, usedefault=True, desc="stimulus-label permutations")
    seed = traits.Int(0, usedefault=True, desc="seed of the permutations")


class _SimilarityOutputSpec(TraitedSpec):
    rsa = File(exists=True, desc="RSA table (TSV)")
    cka = File(exists=True, desc="CKA table (TSV)")
    nss = File(exists=True, desc="neural similarity score table (TSV; empty without random "
                                 "weights)")
    brain_rdms = File(exists=True, desc="npz: condensed RDM per ROI")


class LayerROISimilarity(SimpleInterface):
    """RSA (Mantel) and unbiased linear CKA (row permutations) for every layer x ROI."""

    input_spec = _SimilarityInputSpec
    output_spec = _SimilarityOutputSpec

    def _run_interface(self, runtime):
        with np.load(self.inputs.patterns) as npz:
            patterns = {k: npz[k] for k in npz.files}
        activations = []
        for act_file, meta_file in zip(self.inputs.activations, self.inputs.activation_metas):
            meta = json.loads(Path(meta_file).read_text())
            with np.load(act_file) as npz:
                activations.append((meta, {k: npz[k] for k in meta["layers"]}))
        rows = similarity_tables(patterns, activations, self.inputs.rdm_method,
                                 self.inputs.comparator, self.inputs.n_permutations,
                                 self.inputs.seed)
        from nnbrain.utils.bids import bids_label

        kinds = {(bids_label(m["model"]), bids_label(m["weights"])): m["WeightsSource"]
                 for m, _ in activations}
        rows["nss"] = nss_rows(rows["cka"], kinds)
        cwd = Path(runtime.cwd)
        for measure in ("rsa", "cka", "nss"):
            write_table(rows[measure], cwd / f"{measure}.tsv")
            self._results[measure] = str(cwd / f"{measure}.tsv")
        np.savez(cwd / "brain_rdms.npz",
                 **{roi: compute_rdm(p, self.inputs.rdm_method) for roi, p in patterns.items()})
        self._results["brain_rdms"] = str(cwd / "brain_rdms.npz")
        return runtime
