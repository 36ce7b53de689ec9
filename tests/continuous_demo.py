"""A small continuous-design audio BIDS dataset with a planted layer-to-ROI truth, for tests.

The 7T study's design (``../shared/SCIENCE.md``, section 1) in miniature: one participant
listens to synthetic sound "quilts" in stimulation blocks with rest between them, and the
comparison runs on the BOLD time series of the blocks against HRF-convolved frame-level network
features. :func:`generate` writes, deterministically (seeded), under a root directory:

- ``stimuli/quiltNN.wav``: :data:`N_QUILTS` quilts of 20-28 s, 16 kHz mono PCM-16 WAV, each a
  sequence of 0.6-3.5 s segments drawn from varied synthetic sounds (tone sequences, chirps,
  harmonic complexes, band-pass noise bursts with different spectral envelopes, amplitude-
  modulated tones and noise, short silences) at levels spread over 24 dB, so that the frame
  features vary a lot within a block (:func:`synthesize_quilt`);
- ``code/models/wordcnn_trained.pt``: the state_dict of ``word_cnn2d`` built with seed
  :data:`TRAINED_SEED` (a stand-in for trained weights, distinct from the random seeds 1, 2);
- ``code/model_spec.yaml``: ``word_cnn2d`` on 32 log-mel bands, a 10 ms hop and
  ``frame_step: 10`` (one 32-frame window every 100 ms: 10 frames/s), weights ``trained`` +
  ``random`` seeds [1, 2], layers :data:`LAYERS` (conv1, fc1, fc2), measures cka (linear),
  ckarbf (rbf) and nss;
  ``code/model_spec_rsa.yaml`` adds an rsa measure (refused in continuous mode);
- raw BIDS for sub-01 (2 runs, :data:`BLOCKS_PER_RUN` blocks each; ``events.tsv``: one row per
  block, ``duration`` = the quilt's length, ``stim_file``), fMRIPrep-layout derivatives
  (preprocessed BOLD, brain mask, confounds with motion and non-steady-state columns) and a
  1 mm dseg atlas derivative with roiA, roiB, roiC;
- ``code/ground_truth.json``: the plant and the block/row bookkeeping the app should report.

The plant is computed with nnbrain's own functions for the 'trained' weights
(:func:`nnbrain.models.stimuli.load_frame_inputs`,
:func:`nnbrain.models.extract.extract_activations` with channel-mean pooling,
:func:`nnbrain.core.hrf.features_to_scans`): per voxel ``v``, in percent of baseline::

    y_v(t) = S0_v * (1 + 0.01 * [s_v(t) + EVOKED * b(t) + C(t) @ L_v + drift_v(t)] + nss(t)) + e

with ``b`` a short (:data:`ONSET_S`) boxcar at every block onset convolved with the Glover HRF
(every ROI; roiC has nothing else), ``s_v`` zero outside roiA/roiB and ``s = H(F_layer) @ W``
inside them: ``F_layer`` the frame features of the planted layer (roiA ``fc1``, roiB ``fc2``)
exactly as the app computes them, placed at the block onsets and HRF-convolved
(:func:`nnbrain.core.hrf.features_to_scans`), ``W`` Gaussian mixing weights with an equal
sustained response per voxel (:func:`mixing_weights`), scaled to :data:`SIGNAL_SD` percent SD
over the kept scans. ``C``: z-scored motion (a stationary jitter, :func:`motion`) written to the
confounds and regressed out by the app, ``nss``: a bump on the first two volumes, ``e``:
thermal noise of :data:`NOISE_SD` percent.

Why ``fc1``/``fc2`` and not ``conv1``: with channel-mean pooling on log-mel input, this random
network's conv layers are one-dimensional over time (the first principal component, sound
level, holds > 99 % of the variance of ``conv1`` and ``conv2``), so a ``conv1`` plant is not
distinguishable from the level that every layer carries; the fc layers are not.

Geometry, motion, confounds and the NIfTI/TSV/JSON writers are those of
``datalad_dataset/code/generate_demo.py`` (imported, not copied).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from audio_demo import (  # shared sound synthesis and demo-generator loading
    SAMPLE_RATE,
    _bandpass_noise,
    _harmonic,
    _ramp,
    demo_generator,
)

TASK = "quilts"
SUBJECT = "01"
RUNS = ("01", "02")
TR = 1.5
N_DUMMY = 2
N_QUILTS = 8
BLOCKS_PER_RUN = 4
QUILT_RANGE_S = (20.0, 28.0)
SEGMENT_RANGE_S = (3.0, 7.0)
SILENCE_MAX_S = 4.0
REST_RANGE_S = (12.0, 16.0)
LEAD_S, TAIL_S = 6.0, 18.0
#: Seconds the app is told to drop at the start of each block (``--discard-seconds``).
DISCARD_S = 6.0
SEED = 20261214
ARCHITECTURE = "word_cnn2d"
MODEL = "wordcnn"
LAYERS = ["conv1", "fc1", "fc2"]
PLANT = {"roiA": "fc1", "roiB": "fc2", "roiC": None}
TRAINED_SEED = 3
RANDOM_SEEDS = (1, 2)
INPUT_SHAPE = (32, 32)
#: log-mel, 32 bands (the input's n_freq), default 10 ms hop; every 10th frame: 10 frames/s
AUDIO = {"n_mels": 32, "frame_step": 10}
#: percent signal change: SD of the planted feature signal over the kept scans, common block
#: response amplitude, thermal noise SD per volume, confound contribution SD per voxel
SIGNAL_SD = 3.0
EVOKED = 2.0
#: seconds of the common onset response (a boxcar at every block onset, HRF-convolved)
ONSET_S = 4.0
#: level (dB re the quilt's peak) of the steady background noise under every quilt
BACKGROUND_DB = -40.0
#: AR(1) coefficient of the simulated head motion (a stationary jitter, see :func:`motion`)
MOTION_AR = 0.5
NOISE_SD = 1.0
CONFOUND_SD = 2.0


# --------------------------------------------------------------------------- sounds


#: Segment families of the quilts, with their draw probabilities.
FAMILIES = {"tones": 0.18, "chirp": 0.12, "harmonic": 0.18, "noise": 0.18, "am": 0.14,
            "silence": 0.2}


def synthesize_segment(family: str, duration: float, rng: np.random.Generator) -> np.ndarray:
    """One segment of ``duration`` s at :data:`SAMPLE_RATE`, peak 1 (silence: zeros)."""
    n = int(round(duration * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    if family == "silence":
        return np.zeros(n)
    if family == "tones":  # a sequence of short pure tones at random frequencies
        x = np.zeros(n)
        start = 0
        while start < n:
            length = int(rng.uniform(0.08, 0.3) * SAMPLE_RATE)
            stop = min(start + length, n)
            f = 2 ** rng.uniform(np.log2(200.0), np.log2(6000.0))
            x[start:stop] = _ramp(np.sin(2 * np.pi * f * t[:stop - start]), 0.005)
            start = stop + int(rng.uniform(0.0, 0.1) * SAMPLE_RATE)
    elif family == "chirp":  # exponential sweep, up or down
        f0, f1 = 2 ** rng.uniform(np.log2(150.0), np.log2(6500.0), size=2)
        if abs(np.log2(f1 / f0)) < 1:
            f1 = f0 * 4 if f0 < 1500 else f0 / 4
        ratio = f1 / f0
        phase = f0 * duration / np.log(ratio) * (ratio ** (t / duration) - 1)
        x = np.sin(2 * np.pi * phase)
    elif family == "harmonic":  # harmonic complex, f0 80-500 Hz, tilt -15..+3 dB/oct
        x = _harmonic(t, 2 ** rng.uniform(np.log2(80.0), np.log2(500.0)),
                      rng.uniform(-15.0, 3.0))
    elif family == "noise":  # band-pass noise with a random spectral envelope
        x = _bandpass_noise(rng, n, 2 ** rng.uniform(np.log2(200.0), np.log2(6000.0)),
                            rng.uniform(0.2, 2.5), rng.uniform(-6.0, 6.0))
    elif family == "am":  # amplitude-modulated tone or noise, 2-40 Hz
        rate = 2 ** rng.uniform(1.0, np.log2(40.0))
        carrier = (np.sin(2 * np.pi * 2 ** rng.uniform(np.log2(250.0), np.log2(4000.0)) * t)
                   if rng.random() < 0.5
                   else _bandpass_noise(rng, n, 2 ** rng.uniform(np.log2(400.0),
                                                                np.log2(5000.0)), 1.0))
        x = carrier * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t - np.pi / 2))
    else:
        raise ValueError(f"unknown family {family!r}")
    x = _ramp(x)
    return x / max(np.abs(x).max(), 1e-12)


def synthesize_quilt(duration: float, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A quilt of ``duration`` s: random segments back to back, levels over 24 dB, over a steady
    broadband background noise at :data:`BACKGROUND_DB` (so that silences are not -100 dB).

    Returns
    -------
    waveform : array of shape (round(duration * SAMPLE_RATE),)
    segments : list of (family, onset_s, duration_s, level_db)
    """
    n_total = int(round(duration * SAMPLE_RATE))
    families, probs = list(FAMILIES), np.array(list(FAMILIES.values()))
    parts, segments, filled = [], [], 0
    while filled < n_total:
        family = str(rng.choice(families, p=probs / probs.sum()))
        length = min(rng.uniform(*SEGMENT_RANGE_S), (n_total - filled) / SAMPLE_RATE)
        if family == "silence":
            length = min(length, SILENCE_MAX_S)
        segment = synthesize_segment(family, length, rng)
        level_db = float(rng.uniform(-24.0, 0.0))
        parts.append(segment * 10 ** (level_db / 20))
        segments.append((family, round(filled / SAMPLE_RATE, 3), round(length, 3),
                         round(level_db, 2)))
        filled += segment.size
    wave = np.concatenate(parts)[:n_total]
    wave /= np.abs(wave).max()
    background = _bandpass_noise(rng, n_total, 1000.0, 3.0, -3.0)
    wave += background * 10 ** (BACKGROUND_DB / 20) / background.std()
    return 0.9 * wave / np.abs(wave).max(), segments


# --------------------------------------------------------------------------- model


def model_dict() -> dict:
    """The ``ModelSpec.to_dict()`` fields :func:`nnbrain.models.stimuli.load_frame_inputs` reads."""
    return {"name": MODEL, "input": {"kind": "audio", "shape": list(INPUT_SHAPE)},
            "preprocessing": {"audio": dict(AUDIO)}}


def model_spec_text(sha256: str, rsa: bool = False,
                    weights_file: str = "models/wordcnn_trained.pt") -> str:
    """The model spec (YAML; paths relative to ``code/``); ``rsa`` adds an rsa measure."""
    audio = ", ".join(f"{k}: {v}" for k, v in AUDIO.items())
    return (
        "# nnbrain model spec of the continuous test dataset (tests/continuous_demo.py)\n"
        "models:\n"
        f"  - name: {MODEL}\n"
        f"    architecture: {ARCHITECTURE}\n"
        "    weights:\n"
        "      - label: trained\n"
        f"        file: {weights_file}\n"
        f"        sha256: \"{sha256}\"\n"
        "      - label: random\n"
        f"        seeds: [{', '.join(map(str, RANDOM_SEEDS))}]\n"
        f"    layers: [{', '.join(LAYERS)}]\n"
        "    pooling: channelmean\n"
        "    preprocessing:\n"
        f"      audio: {{{audio}}}\n"
        "measures:\n"
        + ("  rsa: {measure: rsa, rdm: correlation, comparator: tau-a}\n" if rsa else "")
        + "  cka: {measure: cka, kernel: linear}\n"
        "  ckarbf: {measure: cka, kernel: rbf}\n"
        "  nss: {measure: nss, cka: ckarbf}\n"
    )


def frame_features(paths: list[Path], weights: Path) -> tuple[list[dict[str, np.ndarray]], float]:
    """Frame-level channel-mean activations of the 'trained' network, with nnbrain's loaders.

    Returns
    -------
    features : list (one per path) of dict layer -> array of shape (n_frames, n_units)
    frame_rate : float
        Kept frames per second (10).
    """
    import torch

    from nnbrain.models.extract import extract_activations
    from nnbrain.models.stimuli import load_frame_inputs
    from nnbrain.models.zoo import build_architecture

    model = build_architecture(ARCHITECTURE)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    features, rates = [], set()
    for path in paths:
        frames = load_frame_inputs(path, model_dict())
        rates.add(frames.frame_rate)
        features.append(extract_activations(model, frames.inputs, LAYERS,
                                             pooling="channelmean"))
    if len(rates) != 1:
        raise RuntimeError(f"frame rates differ between quilts: {sorted(rates)}")
    return features, rates.pop()


# --------------------------------------------------------------------------- design


def block_schedule(rng: np.random.Generator, durations: np.ndarray
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Quilts of each run (each quilt once in the session), block onsets and scan counts."""
    order = rng.permutation(len(durations)).reshape(len(RUNS), BLOCKS_PER_RUN)
    onsets, n_scans = [], []
    for quilts in order:
        t = LEAD_S + N_DUMMY * TR
        run_onsets = []
        for q in quilts:
            run_onsets.append(round(t, 2))
            t += durations[q] + rng.uniform(*REST_RANGE_S)
        onsets.append(np.array(run_onsets))
        n_scans.append(int(np.ceil((run_onsets[-1] + durations[quilts[-1]] + TAIL_S) / TR)))
    return list(order), onsets, n_scans


def kept_rows(onsets: list[np.ndarray], durations: list[np.ndarray], n_scans: list[int]
              ) -> tuple[list[np.ndarray], int]:
    """Scans per run the app keeps: inside blocks after :data:`DISCARD_S`, every block of the
    session trimmed to the shortest one's count (:func:`nnbrain.core.hrf.block_rows`)."""
    from nnbrain.core.hrf import block_rows

    counts = []
    for ons, durs, n in zip(onsets, durations, n_scans):
        _rows, blocks = block_rows(ons, durs, np.arange(n) * TR, DISCARD_S)
        counts.append(int(np.bincount(blocks).min()))
    length = min(counts)
    rows = [block_rows(ons, durs, np.arange(n) * TR, DISCARD_S, length)[0]
            for ons, durs, n in zip(onsets, durations, n_scans)]
    return rows, length


def cosine_basis(n_scans: int, cutoff_s: float = 128.0) -> np.ndarray:
    """fMRIPrep/SPM discrete cosine high-pass basis without the constant at this dataset's TR."""
    n_basis = int(np.floor(2 * n_scans * TR / cutoff_s))
    t = np.arange(n_scans)
    basis = [np.sqrt(2.0 / n_scans) * np.cos(np.pi * (t + 0.5) * k / n_scans)
             for k in range(1, n_basis + 1)]
    return np.stack(basis, axis=1) if basis else np.zeros((n_scans, 0))


def confounds(gd: ModuleType, params: np.ndarray, vol: np.ndarray, mask: np.ndarray,
              rois: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """The demo generator's confounds table with the cosine columns at this dataset's TR."""
    header, rows = gd.confounds_table(params, vol, mask, rois)
    keep = [i for i, name in enumerate(header) if not name.startswith("cosine")]
    basis = cosine_basis(params.shape[0])
    header = [header[i] for i in keep] + [f"cosine{k:02d}" for k in range(basis.shape[1])]
    rows = [[row[i] for i in keep] + [f"{v:.6g}" for v in basis[t]] for t, row in enumerate(rows)]
    return header, rows


def motion(rng: np.random.Generator, n_scans: int) -> np.ndarray:
    """Head motion: 3 translations (mm) then 3 rotations (rad), shape (n_scans, 6).

    A stationary AR(1) jitter (coefficient :data:`MOTION_AR`), not the demo generator's random
    walk: regressing 24 random-walk (slow) motion parameters out of a ~110-scan run removes
    most of a slow block-level signal, which an event-related design does not have.
    """
    steps = rng.normal(size=(n_scans, 6)) * np.array([0.05] * 3 + [0.0009] * 3)
    params = np.zeros((n_scans, 6))
    for t in range(n_scans):
        params[t] = steps[t] + (MOTION_AR * params[t - 1] if t else 0.0)
    return params - params[0]


def simulate_run(gd: ModuleType, signal: np.ndarray, block: np.ndarray, mask: np.ndarray,
                 rois: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """BOLD (int16, shape GRID + (n_scans,)) and confounds of one run.

    ``signal`` (n_scans, n_voxels of the grid) is the planted percent signal, ``block`` the
    HRF-convolved block boxcar (n_scans,).
    """
    n_scans = signal.shape[0]
    params = motion(rng, n_scans)
    z = (params - params.mean(0)) / params.std(0)
    n_vox = mask.size
    loadings = rng.normal(size=(6, n_vox)) * (CONFOUND_SD / np.sqrt(6))
    drift = np.outer(np.linspace(-1, 1, n_scans), rng.normal(0.0, 0.5, n_vox))
    evoked = EVOKED * np.outer(block, rois.ravel() > 0)
    percent = signal + evoked + z @ loadings + drift
    s0 = np.where(mask.ravel(), rng.uniform(800, 1200, n_vox), 40.0)
    nss = np.zeros(n_scans)
    nss[:N_DUMMY] = [0.6, 0.25][:N_DUMMY]
    bold = s0[None, :] * (1 + 0.01 * percent + nss[:, None])
    bold += rng.normal(size=bold.shape) * (0.01 * NOISE_SD) * s0[None, :]
    vol = np.round(bold.T.reshape(gd.GRID + (n_scans,))).astype(np.int16)
    header, rows = confounds(gd, params, vol.astype(float), mask, rois)
    return vol, header, rows


# --------------------------------------------------------------------------- dataset


def _write_top_level(out: Path, gd: ModuleType) -> None:
    gd._write_json(out / "dataset_description.json", {
        "Name": "nnbrain continuous test: synthetic sound quilts with a planted layer-to-ROI truth",
        "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": "CC0",
        "Authors": ["nnbrain developers"],
        "GeneratedBy": [{"Name": "nnbrain continuous test generator",
                         "Description": "tests/continuous_demo.py"}]})
    (out / "README").write_text("Simulated continuous-design fMRI (blocks of synthetic sound "
                                "quilts); generated by nnbrain's tests/continuous_demo.py.\n")
    gd._write_tsv(out / "participants.tsv", ["participant_id"], [[f"sub-{SUBJECT}"]])
    gd._write_json(out / f"task-{TASK}_bold.json", {
        "TaskName": TASK, "RepetitionTime": TR,
        "TaskDescription": "passive listening to 20-28 s sound quilts in blocks, 12-16 s rest"})
    gd._write_json(out / f"task-{TASK}_events.json", {
        "onset": {"Description": "start of the block (the quilt)", "Units": "s"},
        "duration": {"Description": "length of the quilt", "Units": "s"},
        "stim_file": {"Description": "quilt played during the block, relative to stimuli/"},
        "trial_type": {"Description": "always 'quilt'"}})
    gd._write_json(out / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "fMRIPrep-layout derivatives (simulated)", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1",
                         "Description": "SIMULATED by tests/continuous_demo.py"}],
        "SourceDatasets": [{"URL": "../.."}]})
    gd._write_json(out / "derivatives" / "atlas" / "dataset_description.json", {
        "Name": "nnbrain continuous test atlas", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "atlas", "Description": "planted ROIs"}]})


def mixing_weights(mean: np.ndarray, n_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian unit-to-voxel weights, shape (n_units, n_voxels), with an equal sustained response.

    Each voxel's weights are i.i.d. N(0, 1) orthogonal to the features' mean direction ``m`` and
    exactly 1 along it (``w_v . m / |m| = 1``): every voxel has the same response to the mean
    feature vector (a sustained response to sound of equal size), while ``W W'`` stays
    (nearly) isotropic, so the voxels' Gram matrix is that of the features. With plain Gaussian
    weights the sustained responses ``w_v . m`` would differ hugely between voxels, and the
    app's per-voxel z-scoring would then reweight the voxels by them.
    """
    direction = mean / np.linalg.norm(mean)
    raw = rng.normal(size=(mean.size, n_voxels))
    orthogonal = raw - np.outer(direction, direction @ raw)
    orthogonal -= orthogonal.mean(axis=1, keepdims=True)
    return orthogonal + direction[:, None]


def planted_signal(feats: dict[str, list[np.ndarray]], onsets: list[np.ndarray],
                   quilts: list[np.ndarray], n_scans: list[int], rows: list[np.ndarray],
                   frame_rate: float, rois: np.ndarray, rng: np.random.Generator
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per run: planted percent signal (n_scans, n_grid_voxels) and the HRF block regressor."""
    from nnbrain.core.hrf import features_to_scans

    flat = rois.ravel()
    signals = [np.zeros((n, flat.size)) for n in n_scans]
    blocks = []
    onset_frames = int(round(ONSET_S * frame_rate))
    for ons, n in zip(onsets, n_scans):
        ones = [np.ones((onset_frames, 1)) for _ in ons]
        blocks.append(features_to_scans(ones, list(ons), frame_rate, np.arange(n) * TR)[:, 0])
    for index, layer in enumerate(PLANT.values(), start=1):
        if layer is None:
            continue
        voxels = np.flatnonzero(flat == index)
        mixing = mixing_weights(np.concatenate(feats[layer]).mean(axis=0), voxels.size, rng)
        parts = []
        for ons, qs, n in zip(onsets, quilts, n_scans):
            scans = features_to_scans([feats[layer][q] for q in qs], list(ons), frame_rate,
                                      np.arange(n) * TR)
            parts.append(scans @ mixing)
        kept = np.concatenate([p[r] for p, r in zip(parts, rows)])
        scale = SIGNAL_SD / (kept - kept.mean(axis=0)).std()
        for run, part in enumerate(parts):
            signals[run][:, voxels] = scale * part
    return signals, blocks


def generate(out: Path) -> dict:
    """Write the continuous dataset under ``out`` (created); return its ground truth.

    Returns
    -------
    dict
        The JSON ground truth (``plant``, ``layers``, ``runs`` with the blocks, ``rows_per_block``,
        ``n_blocks``, ``n_rows``, ``subjects`` with ``n_voxels`` per ROI, ...) plus ``spec``,
        ``spec_rsa``, ``weights_file`` (paths), ``frame_features`` (per quilt: layer -> array)
        and ``signals`` (per run: the planted percent signal, (n_scans, n_grid_voxels)).
    """
    import soundfile
    import torch

    from nnbrain.models.zoo import build_architecture

    gd = demo_generator()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    durations = np.round(rng.uniform(*QUILT_RANGE_S, size=N_QUILTS), 1)
    names = [f"quilt{i + 1:02d}.wav" for i in range(N_QUILTS)]
    paths = [out / "stimuli" / name for name in names]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    segments = []
    for path, duration in zip(paths, durations):
        wave, segs = synthesize_quilt(float(duration), rng)
        soundfile.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")
        segments.append(segs)

    weights = out / "code" / "models" / "wordcnn_trained.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_architecture(ARCHITECTURE, seed=TRAINED_SEED).state_dict(), weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    spec = out / "code" / "model_spec.yaml"
    spec.write_text(model_spec_text(sha))
    spec_rsa = out / "code" / "model_spec_rsa.yaml"
    spec_rsa.write_text(model_spec_text(sha, rsa=True))
    per_quilt, frame_rate = frame_features(paths, weights)
    feats = {layer: [f[layer] for f in per_quilt] for layer in LAYERS}

    quilts, onsets, n_scans = block_schedule(rng, durations)
    run_durations = [durations[q] for q in quilts]
    rows, length = kept_rows(onsets, run_durations, n_scans)

    affine, mask, rois = gd.make_geometry()
    atlas, atlas_affine = gd.make_atlas(affine, rois)
    _write_top_level(out, gd)
    atlas_dir = out / "derivatives" / "atlas" / "atlas-nnbrainDemo"
    atlas_stem = f"atlas-nnbrainDemo_space-{gd.SPACE}_res-1_dseg"
    gd.write_nifti(atlas_dir / f"{atlas_stem}.nii.gz", atlas, atlas_affine)
    gd._write_tsv(atlas_dir / f"{atlas_stem}.tsv", ["index", "name"],
                  [[i, roi] for i, roi in enumerate(PLANT, start=1)])

    sub_rng = np.random.default_rng([SEED, int(SUBJECT)])
    signals, blocks = planted_signal(feats, onsets, quilts, n_scans, rows, frame_rate, rois,
                                     sub_rng)
    runs = []
    for run, qs, ons, signal, block in zip(RUNS, quilts, onsets, signals, blocks):
        vol, header, table = simulate_run(gd, signal, block, mask, rois, sub_rng)
        base = f"sub-{SUBJECT}_task-{TASK}_run-{run}"
        func = out / f"sub-{SUBJECT}" / "func"
        gd._write_tsv(func / f"{base}_events.tsv", ["onset", "duration", "trial_type", "stim_file"],
                      [[f"{o:.2f}", f"{durations[q]:.1f}", "quilt", names[q]]
                       for o, q in zip(ons, qs)])
        gd.write_nifti(func / f"{base}_bold.nii.gz", vol, affine, TR)
        prep = out / "derivatives" / "fmriprep" / f"sub-{SUBJECT}" / "func"
        stem = f"{base}_space-{gd.SPACE}_res-2"
        gd.write_nifti(prep / f"{stem}_desc-preproc_bold.nii.gz", vol, affine, TR)
        gd._write_json(prep / f"{stem}_desc-preproc_bold.json", {
            "RepetitionTime": TR, "SkullStripped": False, "TaskName": TASK,
            "Sources": [f"bids:raw:sub-{SUBJECT}/func/{base}_bold.nii.gz"]})
        gd.write_nifti(prep / f"{stem}_desc-brain_mask.nii.gz", mask.astype(np.uint8), affine)
        gd._write_json(prep / f"{stem}_desc-brain_mask.json", {"Type": "Brain"})
        gd._write_tsv(prep / f"{base}_desc-confounds_timeseries.tsv", header, table)
        gd._write_json(prep / f"{base}_desc-confounds_timeseries.json",
                       gd.confounds_sidecar(header))
        runs.append({"run": run, "n_scans": int(vol.shape[-1]),
                     "stim_file": [names[q] for q in qs],
                     "onsets": [float(o) for o in ons],
                     "durations": [float(durations[q]) for q in qs]})
    n_blocks = len(RUNS) * BLOCKS_PER_RUN
    truth = {
        "plant": dict(PLANT), "model": MODEL, "architecture": ARCHITECTURE,
        "weights": "trained", "trained_seed": TRAINED_SEED, "random_seeds": list(RANDOM_SEEDS),
        "weights_sha256": sha, "layers": LAYERS, "pooling": "channelmean",
        "audio": dict(AUDIO), "frame_rate": frame_rate, "tr": TR, "n_dummy": N_DUMMY,
        "discard_seconds": DISCARD_S, "task": TASK,
        "stimuli": names, "quilt_durations": [float(d) for d in durations],
        "quilt_segments": segments, "runs": runs,
        "n_blocks": n_blocks, "rows_per_block": length, "n_rows": n_blocks * length,
        "signal_sd_percent": SIGNAL_SD, "evoked_percent": EVOKED,
        "noise_sd_percent": NOISE_SD, "confound_sd_percent": CONFOUND_SD, "seed": SEED,
        "subjects": {f"sub-{SUBJECT}": {"n_voxels": {roi: int((rois == i).sum())
                                                     for i, roi in enumerate(PLANT, start=1)}}},
    }
    gd._write_json(out / "code" / "ground_truth.json", truth)
    return {**truth, "spec": spec, "spec_rsa": spec_rsa, "weights_file": weights,
            "frame_features": per_quilt, "signals": signals, "kept_rows": rows}


if __name__ == "__main__":
    result = generate(Path(sys.argv[1]).resolve())
    print(json.dumps({k: result[k] for k in ("plant", "n_blocks", "rows_per_block", "n_rows",
                                             "runs")}, indent=1))
