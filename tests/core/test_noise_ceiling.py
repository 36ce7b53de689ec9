"""rdm_noise_ceiling against rsatoolbox 0.3.2's boot_noise_ceiling and a direct leave-one-out
loop."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import squareform

from nnbrain.core.compare import COMPARATORS, compare_rdms
from nnbrain.core.noise_ceiling import POOLING, rdm_noise_ceiling

#: nnbrain comparator -> rsatoolbox's name for it.
RSATOOLBOX_NAME = {"pearson": "corr"}


def _subjects(seed: int, n_subjects: int, n: int, kind: str) -> np.ndarray:
    """Subject RDMs (n_subjects, m): a shared structure plus subject noise."""
    rng = np.random.default_rng(seed)
    m = n * (n - 1) // 2
    rdms = rng.random(m) + rng.normal(scale=0.4, size=(n_subjects, m)) + 2.0
    if kind == "rounded":
        rdms = np.round(rdms, 1)
    elif kind == "categorical":
        categories = rng.integers(0, 2, size=(n_subjects, n))
        iu, ju = np.triu_indices(n, k=1)
        rdms = (categories[:, iu] != categories[:, ju]) + np.round(rdms, 0)
    return rdms


def _rsatoolbox_ceiling(rdms: np.ndarray, method: str) -> tuple[float, float]:
    from rsatoolbox.inference import boot_noise_ceiling
    from rsatoolbox.rdm import RDMs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Noise ceiling for tau based on ..."
        lower, upper = boot_noise_ceiling(RDMs(rdms), method=RSATOOLBOX_NAME.get(method, method))
    return float(lower), float(upper)


@pytest.mark.parametrize("method", sorted(POOLING))
@pytest.mark.parametrize("kind", ["continuous", "rounded", "categorical"])
@pytest.mark.parametrize(("seed", "n_subjects", "n"), [(0, 2, 6), (1, 7, 20)])
def test_matches_rsatoolbox(method, kind, seed, n_subjects, n):
    rdms = _subjects(seed, n_subjects, n, kind)
    lower, upper = rdm_noise_ceiling(rdms, method)
    want_lower, want_upper = _rsatoolbox_ceiling(rdms, method)
    assert isinstance(lower, float) and isinstance(upper, float)
    assert lower == pytest.approx(want_lower, abs=1e-10)
    assert upper == pytest.approx(want_upper, abs=1e-10)
    assert lower < upper


@pytest.mark.parametrize("method", sorted(POOLING))
def test_equals_leave_one_out_loop_over_compare_rdms(method):
    """The definition, written out: pool (as rsatoolbox's pool_rdm), compare, average."""
    rdms = _subjects(2, 5, 9, "rounded")
    terms = POOLING[method](rdms)
    lower = np.mean([compare_rdms(np.delete(terms, s, axis=0).mean(axis=0), rdms[s], method)
                     for s in range(5)])
    upper = np.mean([compare_rdms(terms.mean(axis=0), rdms[s], method) for s in range(5)])
    assert rdm_noise_ceiling(rdms, method) == pytest.approx((lower, upper), abs=1e-12)


@pytest.mark.parametrize("method", sorted(POOLING))
def test_square_rdms_give_the_same_ceiling(method):
    rdms = _subjects(3, 4, 8, "continuous")
    square = np.stack([squareform(v) for v in rdms])
    assert rdm_noise_ceiling(square, method) == pytest.approx(rdm_noise_ceiling(rdms, method),
                                                              abs=1e-15)


def test_every_comparator_has_a_pooling_rule():
    assert set(POOLING) == set(COMPARATORS)


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError) as info:
        rdm_noise_ceiling(_subjects(4, 3, 5, "continuous"), "kendall")
    assert "kendall" in str(info.value)
    for name in POOLING:
        assert name in str(info.value)


@pytest.mark.parametrize("rdms", [np.arange(1.0, 7.0), np.arange(1.0, 7.0)[None],
                                  squareform(np.arange(1.0, 7.0))])
def test_needs_two_subjects(rdms):
    with pytest.raises(ValueError, match="at least 2 subjects"):
        rdm_noise_ceiling(rdms, "spearman")


def test_degenerate_rdms_raise():
    rdms = _subjects(5, 3, 5, "continuous")
    rdms[1] = 0.0
    with pytest.raises(ValueError, match="zero"):
        rdm_noise_ceiling(rdms, "cosine")
    with pytest.raises(ValueError, match="constant"):
        rdm_noise_ceiling(rdms, "pearson")
