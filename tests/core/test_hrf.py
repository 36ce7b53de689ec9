"""Continuous designs: HRF convolution of frame features and block selection of scans."""

from __future__ import annotations

import numpy as np
import pytest

from nnbrain.core.hrf import block_rows, features_to_scans, glover_kernel


def test_glover_kernel_is_nilearns_unit_sum_hrf() -> None:
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf

    kernel = glover_kernel(50.0)
    assert kernel.shape == (1600,)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(kernel, glover_hrf(t_r=0.02, oversampling=1, time_length=32.0))
    assert 4.0 < np.argmax(kernel) / 50.0 < 6.0  # peak about 5 s after the onset
    with pytest.raises(ValueError, match="positive"):
        glover_kernel(0.0)


@pytest.mark.parametrize("t_r", [1.0, 2.0])
def test_boxcar_features_equal_nilearns_glover_regressor(t_r: float) -> None:
    """A feature equal to 1 while a stimulus plays is nilearn's block regressor."""
    from nilearn.glm.first_level.hemodynamic_models import compute_regressor

    frame_rate = 50.0
    n_scans = 120
    scan_times = np.arange(n_scans) * t_r
    onsets, durations = [10.0, 70.0, 150.0], [20.0, 12.5, 30.0]
    features = [np.ones((int(d * frame_rate), 1)) for d in durations]
    ours = features_to_scans(features, onsets, frame_rate, scan_times)[:, 0]
    reference, _ = compute_regressor(
        np.array([onsets, durations, np.ones(3)]), "glover", scan_times,
        oversampling=int(round(t_r * frame_rate)))
    # nilearn scales its kernel to unit sum per high-resolution sample, as here
    np.testing.assert_allclose(ours, reference[:, 0], rtol=0, atol=0.02)
    assert ours.max() > 1.0  # the kernel sums to 1 with its undershoot, unreached in 30 s
    assert np.all(np.abs(ours[scan_times < onsets[0]]) < 1e-12)


def test_features_are_linear_and_shifted_by_onset() -> None:
    rng = np.random.default_rng(0)
    frame_rate, scan_times = 20.0, np.arange(60) * 1.5
    a, b = rng.normal(size=(100, 3)), rng.normal(size=(60, 3))
    both = features_to_scans([a, b], [5.0, 40.0], frame_rate, scan_times)
    one = features_to_scans([a], [5.0], frame_rate, scan_times)
    other = features_to_scans([b], [40.0], frame_rate, scan_times)
    np.testing.assert_allclose(both, one + other, atol=1e-12)
    # a later onset by exactly one scan shifts the regressor by one scan
    later = features_to_scans([a], [6.5], frame_rate, scan_times)
    np.testing.assert_allclose(later[1:], one[:-1], atol=1e-12)


def test_features_to_scans_checks_input() -> None:
    times = np.arange(10.0)
    with pytest.raises(ValueError, match="2 feature arrays for 1 onsets"):
        features_to_scans([np.ones((3, 2))] * 2, [0.0], 10.0, times)
    with pytest.raises(ValueError, match="before the first scan"):
        features_to_scans([np.ones((3, 2))], [-1.0], 10.0, times)
    with pytest.raises(ValueError, match=r"must all be \(n_frames, 2\)"):
        features_to_scans([np.ones((3, 2)), np.ones((3, 4))], [0.0, 1.0], 10.0, times)


def test_block_rows_discard_and_trim() -> None:
    scan_times = np.arange(50) * 2.0
    rows, blocks = block_rows(np.array([10.0, 50.0]), np.array([30.0, 40.0]), scan_times,
                              discard_s=6.0)
    # block 0: 16 <= t < 40 -> scans 8..19 (12); block 1: 56 <= t < 90 -> scans 28..44 (17)
    np.testing.assert_array_equal(rows, np.r_[np.arange(8, 20), np.arange(28, 40)])
    np.testing.assert_array_equal(blocks, np.repeat([0, 1], 12))
    rows, _ = block_rows(np.array([10.0, 50.0]), np.array([30.0, 40.0]), scan_times, length=5)
    np.testing.assert_array_equal(rows, np.r_[np.arange(5, 10), np.arange(25, 30)])
    with pytest.raises(ValueError, match="fewer than 13 scans"):
        block_rows(np.array([10.0, 50.0]), np.array([30.0, 40.0]), scan_times, 6.0, length=13)
    with pytest.raises(ValueError, match="keeps no scan"):
        block_rows(np.array([10.0]), np.array([4.0]), scan_times, discard_s=6.0)


def test_design_rows_trim_every_block_of_every_run_to_one_length() -> None:
    from nnbrain.core.hrf import design_rows

    times = [np.arange(40) * 2.0, np.arange(30) * 2.0]
    run, scan, block = design_rows([np.array([4.0, 40.0]), np.array([10.0])],
                                   [np.array([20.0, 30.0]), np.array([16.0])], times, 2.0)
    # scans per block: run0 b0 6 <= t < 24 -> 9; b1 42 <= t < 70 -> 14; run1 12 <= t < 26 -> 7
    assert len(run) == 3 * 7
    np.testing.assert_array_equal(block, np.repeat([0, 1, 2], 7))
    np.testing.assert_array_equal(run, np.repeat([0, 0, 1], 7))
    np.testing.assert_array_equal(scan, np.r_[np.arange(3, 10), np.arange(21, 28),
                                              np.arange(6, 13)])
    with pytest.raises(ValueError, match="no stimulation block"):
        design_rows([np.array([])], [np.array([])], times[:1])


def test_block_response_is_a_convolved_boxcar() -> None:
    from nnbrain.core.hrf import block_response

    times = np.arange(60) * 2.0
    response = block_response(np.array([10.0, 70.0]), np.array([20.0, 30.0]), times)
    want = features_to_scans([np.ones((200, 1)), np.ones((300, 1))], [10.0, 70.0], 10.0, times)
    np.testing.assert_allclose(response, want[:, 0], atol=1e-12)
    assert np.all(np.abs(response[times < 10]) < 1e-12) and response.max() > 1.0
