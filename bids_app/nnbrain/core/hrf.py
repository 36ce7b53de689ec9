"""Continuous designs: network features at the frame rate -> BOLD-like regressors at the scans.

The 7T study's recipe (``../shared/SCIENCE.md``, section 1): frame-level features are placed at
the stimulus onsets (zero where no stimulus plays), convolved with the Glover HRF (32 s kernel),
and compared with the fMRI over the stimulation blocks only, the first seconds of each block
dropped and every block trimmed to one length. Here the convolved features are sampled at the
scan times (linear interpolation), so rows are scans. :func:`slot_features` places every
stimulus at every block slot (then cleaned as the BOLD), the basis of the randomization test
over stimulus-to-block assignments (:func:`nnbrain.core.permutation.cka_assignment_test`).
"""

from __future__ import annotations

import posixpath

import numpy as np

#: Length of the HRF kernel in seconds (the 7T study: 32 s).
HRF_LENGTH_S = 32.0


def glover_kernel(frame_rate: float, length_s: float = HRF_LENGTH_S) -> np.ndarray:
    """The Glover HRF sampled at ``frame_rate``, normalised to unit sum (nilearn's ``glover_hrf``).

    Parameters
    ----------
    frame_rate : float
        Samples per second.
    length_s : float
        Kernel length in seconds.

    Returns
    -------
    array of shape (round(length_s * frame_rate),)
    """
    from nilearn.glm.first_level.hemodynamic_models import glover_hrf

    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    return np.asarray(glover_hrf(t_r=1.0 / frame_rate, oversampling=1, time_length=length_s),
                      dtype=np.float64)


def features_to_scans(features: list[np.ndarray], onsets: list[float], frame_rate: float,
                      scan_times: np.ndarray, hrf_length_s: float = HRF_LENGTH_S) -> np.ndarray:
    """HRF-convolved frame features of the stimuli of one run, sampled at its scans.

    Parameters
    ----------
    features : list of arrays of shape (n_frames_i, n_units)
        Frame-level features of each presented stimulus, frame ``f`` at ``f / frame_rate`` s
        after its onset.
    onsets : list of float
        Onset of each stimulus (s, from the first scan).
    frame_rate : float
        Frames per second of ``features``.
    scan_times : array of shape (n_scans,)
        Acquisition time of each scan (s).
    hrf_length_s : float
        Length of the Glover kernel.

    Returns
    -------
    array of shape (n_scans, n_units), float64
        Zero before the first onset; frames beyond the last scan are dropped.
    """
    if len(features) != len(onsets):
        raise ValueError(f"{len(features)} feature arrays for {len(onsets)} onsets")
    if not features:
        raise ValueError("no stimulus in this run")
    scan_times = np.asarray(scan_times, dtype=np.float64)
    n_units = features[0].shape[1]
    n_grid = int(np.ceil(scan_times.max() * frame_rate)) + 2
    grid = np.zeros((n_grid, n_units))
    for feats, onset in zip(features, onsets):
        if feats.ndim != 2 or feats.shape[1] != n_units:
            raise ValueError(f"features must all be (n_frames, {n_units}), got {feats.shape}")
        start = int(round(onset * frame_rate))
        if start < 0:
            raise ValueError(f"onset {onset} s is before the first scan")
        stop = min(start + len(feats), n_grid)
        if stop > start:
            grid[start:stop] += feats[: stop - start]
    from scipy.signal import oaconvolve

    convolved = oaconvolve(grid, glover_kernel(frame_rate, hrf_length_s)[:, None], axes=0)[:n_grid]
    position = scan_times * frame_rate
    lower = np.floor(position).astype(np.int64)
    weight = (position - lower)[:, None]
    return convolved[lower] * (1 - weight) + convolved[lower + 1] * weight


def block_response(onsets: np.ndarray, durations: np.ndarray, scan_times: np.ndarray,
                   frame_rate: float = 10.0) -> np.ndarray:
    """The response common to every block: a unit boxcar per block, HRF-convolved, at the scans.

    Parameters
    ----------
    onsets, durations : arrays of shape (n_blocks,)
    scan_times : array of shape (n_scans,)
    frame_rate : float
        Resolution (Hz) of the boxcar before convolution.

    Returns
    -------
    array of shape (n_scans,)
    """
    boxcars = [np.ones((max(1, int(round(d * frame_rate))), 1)) for d in durations]
    return features_to_scans(boxcars, list(onsets), frame_rate, scan_times)[:, 0]


def block_rows(onsets: np.ndarray, durations: np.ndarray, scan_times: np.ndarray,
               discard_s: float = 0.0, length: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Scans inside the stimulation blocks of one run, each block trimmed to one length.

    A scan belongs to block ``b`` when ``onset_b + discard_s <= t < onset_b + duration_b``.

    Parameters
    ----------
    onsets, durations : arrays of shape (n_blocks,)
        Seconds from the first scan.
    scan_times : array of shape (n_scans,)
    discard_s : float
        Seconds dropped at the start of each block (the 7T study: 6 s).
    length : int, optional
        Scans kept per block (its first ones); default the shortest block's count.

    Returns
    -------
    rows : int array of shape (n_blocks * length,)
        Scan indices, block after block.
    blocks : int array of shape (n_blocks * length,)
        Block index (event row) of each kept scan.
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    durations = np.asarray(durations, dtype=np.float64)
    scan_times = np.asarray(scan_times, dtype=np.float64)
    members = [np.flatnonzero((scan_times >= o + discard_s) & (scan_times < o + d))
               for o, d in zip(onsets, durations)]
    counts = [len(m) for m in members]
    keep = min(counts) if length is None else int(length)
    if keep < 1:
        raise ValueError(f"a block keeps no scan (scans per block: {counts}, discarding "
                         f"{discard_s} s)")
    short = [b for b, c in enumerate(counts) if c < keep]
    if short:
        raise ValueError(f"blocks {short} have fewer than {keep} scans ({counts})")
    rows = np.concatenate([m[:keep] for m in members])
    blocks = np.repeat(np.arange(len(members)), keep)
    return rows, blocks


def design_rows(onsets: list[np.ndarray], durations: list[np.ndarray],
                scan_times: list[np.ndarray], discard_s: float = 0.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scans compared in a continuous design: every block of every run, one length.

    Parameters
    ----------
    onsets, durations : list of arrays of shape (n_blocks_r,)
        Per run, the stimulation blocks (s from the run's first scan).
    scan_times : list of arrays of shape (n_scans_r,)
        Per run, the scan times.
    discard_s : float
        Seconds dropped at the start of each block.

    Returns
    -------
    run, scan, block : int arrays of shape (n_rows,)
        Run index, scan index within the run and block number (counted across runs) of each
        row; every block keeps the scan count of the shortest block of the design.
    """
    counts = [int(((t >= o + discard_s) & (t < o + d)).sum())
              for on, du, t in zip(onsets, durations, scan_times)
              for o, d in zip(np.asarray(on, float), np.asarray(du, float))]
    if not counts:
        raise ValueError("the design has no stimulation block")
    length = min(counts)
    runs, scans, blocks = [], [], []
    first_block = 0
    for r, (on, du, t) in enumerate(zip(onsets, durations, scan_times)):
        if len(on) == 0:
            continue
        rows, block = block_rows(on, du, t, discard_s, length=length)
        runs.append(np.full(rows.size, r))
        scans.append(rows)
        blocks.append(block + first_block)
        first_block += len(on)
    return np.concatenate(runs), np.concatenate(scans), np.concatenate(blocks)


def slot_features(activations: dict[str, np.ndarray], meta: dict, rows: dict,
                  confounds: list[np.ndarray] | None = None, high_pass: float | None = None
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every stimulus's frame activations as they would appear at every block slot.

    Stimulus ``s`` placed at slot ``b``'s onset, convolved with the Glover HRF, sampled at the
    scans of ``b``'s run and, with ``confounds`` and ``high_pass``, cleaned as the BOLD was
    (confounds regressed out, linear detrend, high-pass: :func:`clean_like_bold`), at the
    compared rows. All of this is linear, so the features of any assignment of stimuli to
    slots are a sum over the slots (:func:`played_features`,
    :func:`nnbrain.core.permutation.cka_assignment_test`).

    Parameters
    ----------
    activations : dict of str to array of shape (n_frames_total, n_units)
        Every stimulus's frames, stimulus after stimulus (``meta["FrameCounts"]``).
    meta : dict
        Activations provenance: ``stimuli``, ``FrameCounts``, ``FrameRate``.
    rows : dict
        :class:`nnbrain.interfaces.continuous.ROITimeseries` rows (run, scan, blocks, n_scans,
        t_r).
    confounds : list of arrays of shape (n_scans_r, n_confounds), optional
        Per run, the confounds regressed out of the BOLD (with the block response).
    high_pass : float, optional
        The BOLD's high-pass cutoff (Hz).

    Returns
    -------
    slots : dict of str to array of shape (n_played, n_slots, n_rows, n_units), float64
        Per layer; stimuli in order of first play, zero outside the slot's run.
    played : int array of shape (n_slots,)
        The stimulus (index into the first axis) that played in each slot.
    """
    starts = np.concatenate([[0], np.cumsum(meta["FrameCounts"])])
    where = {name: (starts[i], starts[i + 1]) for i, name in enumerate(meta["stimuli"])}
    names = [posixpath.basename(b["stim_file"]) for b in rows["blocks"]]
    stimuli = list(dict.fromkeys(names))
    played = np.array([stimuli.index(n) for n in names])
    run = np.asarray(rows["run"])
    scan = np.asarray(rows["scan"])
    slots = {layer: np.zeros((len(stimuli), len(names), run.size, acts.shape[1]))
             for layer, acts in activations.items()}
    operators = {}
    for b, block in enumerate(rows["blocks"]):
        r = block["run"]
        kept = np.flatnonzero(run == r)
        times = np.arange(rows["n_scans"][r]) * rows["t_r"][r]
        if r not in operators:
            # cleaning is linear: its matrix, applied to the identity once per run, cleans
            # every regressor (nilearn's filter runs column by column, far slower)
            identity = np.eye(times.size)
            matrix = (identity if confounds is None
                      else clean_like_bold(identity, confounds[r], rows["t_r"][r], high_pass))
            operators[r] = matrix[scan[kept]]
        for layer, acts in activations.items():
            for s, name in enumerate(stimuli):
                regressors = features_to_scans([np.asarray(acts[slice(*where[name])], np.float64)],
                                               [block["onset"]], meta["FrameRate"], times)
                slots[layer][s, b, kept] = operators[r] @ regressors
    return slots, played


def played_features(slots: dict[str, np.ndarray], played: np.ndarray) -> dict[str, np.ndarray]:
    """The features of the design as played: per layer, the sum over slots of the played
    stimulus's slot features, shape (n_rows, n_units) (see :func:`slot_features`)."""
    index = np.arange(played.size)
    return {layer: values[played, index].sum(axis=0) for layer, values in slots.items()}


def clean_like_bold(values: np.ndarray, confounds: np.ndarray, t_r: float,
                    high_pass: float | None) -> np.ndarray:
    """``values`` (n_scans, k) cleaned as nnbrain cleans the BOLD (``Denoise``, nilearn
    ``clean_img``): confounds regressed out, linear detrend, high-pass (nilearn ``clean``)."""
    from nilearn.signal import clean

    return clean(values, detrend=True, standardize=None, confounds=confounds,
                 high_pass=high_pass, t_r=t_r)
