"""Group level: subject means with bootstrap CIs over participants, ROI-label checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnbrain.core.bootstrap import bootstrap_subject_means, percentile_ci
from nnbrain.errors import DataError
from nnbrain.interfaces.group import KEYS, subject_mean
from nnbrain.interfaces.roi import read_atlas_labels


def _table(n_subjects: int, n_layers: int = 3, n_rois: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(n_subjects)
    rows = []
    for s in range(n_subjects):
        for layer in range(n_layers):
            for roi in range(n_rois):
                rows.append({"participant_id": f"sub-{s:02d}", "model": "m", "weights": "w",
                             "layer": f"l{layer}", "layer_name": f"l.{layer}",
                             "roi": f"r{roi}", "roi_name": f"R {roi}",
                             "statistic": rng.normal()})
    return pd.DataFrame(rows)


def test_subject_mean_ci_is_the_subject_bootstrap_of_each_pair() -> None:
    table = _table(5)
    out = subject_mean(table, n_bootstrap=200, seed=3)
    assert list(out[KEYS].itertuples(index=False, name=None))[:2] == [
        ("m", "w", "l0", "l.0", "r0", "R 0"), ("m", "w", "l0", "l.0", "r1", "R 1")]
    wide = np.stack([table[(table["layer"] == r.layer) & (table["roi"] == r.roi)]["statistic"]
                     for r in out.itertuples()], axis=1)
    low, high = percentile_ci(bootstrap_subject_means(wide, 200, 3))
    np.testing.assert_allclose(out["ci_low"], low)
    np.testing.assert_allclose(out["ci_high"], high)
    np.testing.assert_allclose(out["mean"], wide.mean(axis=0))
    assert (out["n_participants"] == 5).all()


def test_one_participant_has_no_interval_and_many_layers_stay_small() -> None:
    out = subject_mean(_table(1), n_bootstrap=200)
    assert out["ci_low"].isna().all() and out["ci_high"].isna().all()
    big = subject_mean(_table(3, n_layers=40, n_rois=60), n_bootstrap=20)
    assert len(big) == 40 * 60 and big["ci_low"].notna().all()


def test_atlas_names_colliding_as_labels_are_refused(tmp_path: Path) -> None:
    tsv = tmp_path / "atlas.tsv"
    tsv.write_text("index\tname\n1\tV1-L\n2\tV1 L\n")
    with pytest.raises(DataError, match="ROI names 'V1-L' and 'V1 L' both become the label"):
        read_atlas_labels(tsv)
    tsv.write_text("index\tname\n0\tbackground\n1\tV1\n2\tV2\n")
    assert read_atlas_labels(tsv) == [(1, "V1"), (2, "V2")]


def test_group_refuses_participants_run_with_other_measure_settings(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    from nnbrain.cli.run import _same_measure

    tables = []
    for subject, comparator in (("01", "tau-a"), ("02", "tau-a"), ("03", "spearman")):
        table = tmp_path / f"sub-{subject}_desc-rsa_similarity.tsv"
        table.write_text("model\n")
        table.with_suffix(".json").write_text(json.dumps({
            "Measure": "rsa", "Parameters": {"Comparator": comparator}, "PermutationTest": None,
            "Design": "event-related"}))
        tables.append(SimpleNamespace(path=str(table)))
    assert _same_measure("rsa", tables[:2])["Parameters"]["Comparator"] == "tau-a"
    with pytest.raises(DataError) as info:
        _same_measure("rsa", tables)
    assert info.value.exit_code == 65
    assert str(info.value).startswith(f"{tables[2].path}: desc-rsa: Parameters differs from "
                                      f"that of {tables[0].path}")
