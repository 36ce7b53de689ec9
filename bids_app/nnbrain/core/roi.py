"""ROI response patterns from single-trial estimates."""

from __future__ import annotations

import numpy as np


def average_by_condition(values: np.ndarray, trial_conditions: list[str],
                         conditions: list[str]) -> np.ndarray:
    """Mean of trial rows per condition.

    Parameters
    ----------
    values : array of shape (n_trials, n_voxels)
    trial_conditions : list of str, length n_trials
    conditions : list of str
        Output row order; every condition must occur at least once.

    Returns
    -------
    array of shape (n_conditions, n_voxels)
    """
    values = np.asarray(values, dtype=np.float64)
    trial_conditions = np.asarray(trial_conditions)
    out = np.empty((len(conditions), values.shape[1]))
    for i, condition in enumerate(conditions):
        rows = trial_conditions == condition
        if not rows.any():
            raise ValueError(f"condition {condition!r} has no trial")
        out[i] = values[rows].mean(axis=0)
    return out


def roi_values(data: np.ndarray, labels: np.ndarray, index: int) -> np.ndarray:
    """Voxel values of one ROI.

    Parameters
    ----------
    data : array of shape (x, y, z, n_volumes)
    labels : integer array of shape (x, y, z)
    index : int

    Returns
    -------
    array of shape (n_volumes, n_voxels_in_roi), voxels in C order
    """
    return np.asarray(data)[labels == index].T


def zscore_scans(values: np.ndarray) -> np.ndarray:
    """Each column z-scored over the scans (rows); constant columns become 0.

    Parameters
    ----------
    values : array of shape (n_scans, n_voxels)

    Returns
    -------
    array of shape (n_scans, n_voxels), float64
    """
    values = np.asarray(values, dtype=np.float64)
    sd = values.std(axis=0)
    return np.divide(values - values.mean(axis=0), sd, out=np.zeros_like(values),
                     where=sd > 0)
