"""Group level: gather participant similarity tables, average over participants, draw heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from nnbrain.interfaces.bids import DerivativeWriter

KEYS = ["model", "weights", "layer", "layer_name", "roi", "roi_name"]
#: Bootstrap samples over participants for the CI of every subject mean.
GROUP_BOOTSTRAP = 1000


def subject_mean(table, n_bootstrap: int = 0, seed: int = 0, level: float = 0.95):
    """Mean, SD (ddof=1), count and bootstrap CI of ``statistic`` over participants.

    Parameters
    ----------
    table : pandas.DataFrame
        Participant rows with ``participant_id``, :data:`KEYS` and ``statistic``.
    n_bootstrap, seed : int
        Bootstrap samples of the participants for the percentile interval of the mean
        (0, or fewer than 2 participants: ``ci_low``/``ci_high`` are NaN).
    level : float
        Coverage of the interval.

    Returns
    -------
    pandas.DataFrame with :data:`KEYS`, ``mean``, ``sd``, ``n_participants``, ``ci_low``,
    ``ci_high`` (one row per model, weights, layer and ROI, in first-seen order).
    """
    import pandas as pd

    from nnbrain.core.bootstrap import bootstrap_subject_means, percentile_ci

    grouped = table.groupby(KEYS, sort=False)["statistic"]
    out = grouped.agg(mean="mean", sd="std", n_participants="count").reset_index()
    out["ci_low"] = out["ci_high"] = np.nan
    if n_bootstrap and table["participant_id"].nunique() >= 2:
        wide = table.set_index(["participant_id", *KEYS])["statistic"].unstack(KEYS)
        wide = wide.reindex(columns=pd.MultiIndex.from_frame(out[KEYS]))
        low, high = percentile_ci(bootstrap_subject_means(wide.to_numpy(), n_bootstrap, seed),
                                  level)
        out["ci_low"], out["ci_high"] = low, high
    return out


def read_relmat(path: str) -> np.ndarray:
    """A square relationship matrix TSV (header = node labels): array (n, n)."""
    import pandas as pd

    return pd.read_csv(path, sep="\t").to_numpy(dtype=np.float64)


def noise_ceilings(rdm_files: dict[str, list[str]], comparator: str) -> dict[str, tuple[float,
                                                                                        float]]:
    """Lower and upper noise ceiling of each ROI over the participants' ROI RDMs.

    Parameters
    ----------
    rdm_files : dict of ROI label to list of str
        One square RDM TSV per participant.
    comparator : str
        The RSA measure's comparator.

    Returns
    -------
    dict of ROI label to (lower, upper); NaN with fewer than 2 participants.
    """
    from nnbrain.core.noise_ceiling import rdm_noise_ceiling

    out = {}
    for roi, files in rdm_files.items():
        if len(files) < 2:
            out[roi] = (np.nan, np.nan)
            continue
        lower, upper = rdm_noise_ceiling(np.stack([read_relmat(f) for f in files]), comparator)
        out[roi] = (float(lower), float(upper))
    return out


class _GroupInputSpec(BaseInterfaceInputSpec):
    tables = InputMultiObject(File(exists=True), mandatory=True,
                              desc="participant similarity TSVs of one measure")
    subjects = traits.List(traits.Str, mandatory=True, desc="participant label of each table")
    sources = traits.List(traits.Str, mandatory=True, desc="BIDS URI of each table")
    label = traits.Str(mandatory=True, desc="measure label (desc of the participant tables)")
    measure = traits.Dict(mandatory=True,
                          desc="sidecar of a participant table: Measure, Method, Parameters, "
                               "Statistic columns")
    roi_rdms = traits.Dict(traits.Str, traits.List(traits.Str), usedefault=True,
                           desc="rsa only: ROI label -> participants' ROI RDM TSVs (noise "
                                "ceilings)")
    seed = traits.Int(0, usedefault=True, desc="seed of the bootstrap over participants")
    entities = traits.Dict(mandatory=True, desc="task, space, atlas of the group outputs")
    base_directory = Directory(mandatory=True, desc="staging root mirroring the output dataset")


class _GroupOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str, desc="paths written, relative to base_directory")


class GroupSimilarity(SimpleInterface):
    """Write the all-participant table, the subject-mean table (bootstrap CIs over participants,
    noise ceilings for RSA) and a heatmap for one measure."""

    input_spec = _GroupInputSpec
    output_spec = _GroupOutputSpec

    def _run_interface(self, runtime):
        import pandas as pd

        from nnbrain.reports.figures import similarity_heatmaps

        base = Path(self.inputs.base_directory)
        label = self.inputs.label
        measure = dict(self.inputs.measure)
        n_bootstrap = GROUP_BOOTSTRAP
        ents = dict(self.inputs.entities)
        frames = []
        for subject, table in zip(self.inputs.subjects, self.inputs.tables):
            frame = pd.read_csv(table, sep="\t")
            frame.insert(0, "participant_id", f"sub-{subject}")
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        mean = subject_mean(table, n_bootstrap, self.inputs.seed)
        mean_method = f"subject mean of the desc-{label} statistic (sd: ddof=1)"
        extra: dict = {}
        if len(frames) >= 2:
            extra["ConfidenceInterval"] = {
                "Level": 0.95, "Method": "percentile bootstrap over participants",
                "Samples": n_bootstrap, "Seed": self.inputs.seed}
        if measure["Measure"] == "rsa":
            ceilings = noise_ceilings(dict(self.inputs.roi_rdms),
                                      measure["Parameters"]["Comparator"])
            mean["noise_ceiling_lower"] = [ceilings.get(r, (np.nan, np.nan))[0]
                                           for r in mean["roi"]]
            mean["noise_ceiling_upper"] = [ceilings.get(r, (np.nan, np.nan))[1]
                                           for r in mean["roi"]]
            extra["NoiseCeiling"] = {
                "Method": "rsatoolbox boot_noise_ceiling: lower = mean comparison of each "
                          "participant's ROI RDM with the mean of the others (leave one out), "
                          "upper = with the mean of all",
                "Comparator": measure["Parameters"]["Comparator"],
                "RDM": measure["Parameters"]["RDM"],
                "Sources": sorted(f for files in self.inputs.roi_rdms.values() for f in files)}
        writer = DerivativeWriter(base)
        meta = {"Participants": [f"sub-{s}" for s in self.inputs.subjects],
                "Sources": list(self.inputs.sources),
                "SoftwareVersions": {"pandas": pd.__version__, "numpy": np.__version__},
                "Measure": measure["Measure"], "Parameters": measure["Parameters"]}
        for desc, frame, method, more in [
            (label, table, f"participant desc-{label} tables stacked (participant_id first)",
             {}),
            (f"{label}Mean", mean, mean_method, extra),
        ]:
            writer.write("group_similarity", {**ents, "desc": desc},
                         lambda p, f=frame: f.to_csv(p, sep="\t", index=False, na_rep="n/a",
                                                     float_format="%.10g"),
                         {**meta, **more, "Method": method})
        panels = []
        for (model, weights), part in mean.groupby(["model", "weights"], sort=False):
            layers = list(dict.fromkeys(part["layer"]))
            rois = list(dict.fromkeys(part["roi"]))
            grid = part.pivot(index="roi", columns="layer", values="mean").loc[rois, layers]
            panels.append((f"{model} ({weights})", layers, rois, grid.to_numpy()))
        writer.write("group_figure", {**ents, "desc": label},
                     lambda p: similarity_heatmaps(
                         panels, f"{label}: mean over {len(frames)} participants", p,
                         f"mean {label}"))
        written = writer.written
        (Path(runtime.cwd) / "written.json").write_text(json.dumps(written))
        self._results["out_files"] = written
        return runtime
