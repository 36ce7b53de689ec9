#!/usr/bin/env python
"""Generate nnbrain's demo dataset: real digit images, a small trained CNN, planted-truth BOLD.

Deterministic: the same seeds give the same stimuli, weights and voxel arrays.
Run from anywhere: ``python datalad_dataset/code/generate_demo.py [OUT_DIR]`` (default: the
``datalad_dataset/`` folder holding this script). Writes

- ``stimuli/stimNN.png``: 30 handwritten digits from scikit-learn's bundled ``load_digits``
  (3 per class, held out from training), 8x8 grayscale;
- ``code/models/digitcnn_trained.pt``: state_dict of :func:`nnbrain.models.zoo` ``digitcnn``,
  trained for a few seconds on the other 1767 digits, and ``code/models/checkpoints/`` with the
  states after epochs 1, 2 and 4;
- ``code/model_spec.yaml`` and ``code/ground_truth.json``;
- raw BIDS (``sub-0X/func/*_bold.nii.gz``, ``*_events.tsv``) and fMRIPrep-layout derivatives
  (``derivatives/fmriprep``: preprocessed BOLD, brain mask, confounds) for 3 subjects x 2 runs;
- ``derivatives/atlas``: a 1 mm dseg atlas with three ROIs whose voxels carry the plant:
  ``roiA`` = noisy linear mixture of the early layer (conv1), ``roiB`` = of the late layer (fc1),
  ``roiC`` = evoked response identical for every stimulus, plus noise (no stimulus information).

BOLD model per voxel ``v`` (percent of the voxel's baseline ``S0_v``)::

    y(t) = S0_v * (1 + 0.01 * [X(t) @ A[:, v] + C(t) @ L[:, v] + drift_v(t)] + nss(t)) + e(t)

``X`` holds one Glover-HRF regressor per trial, ``A`` the planted stimulus amplitudes, ``C`` the
z-scored motion confounds written to the confounds TSV (so denoising helps), ``nss`` a decaying
non-steady-state bump on the first two volumes, ``e`` Gaussian thermal noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TASK = "digits"
SPACE = "MNI152NLin2009cAsym"
SUBJECTS = ("01", "02", "03")
RUNS = ("01", "02")
TR = 2.0
N_DUMMY = 2
GRID = (12, 12, 8)
VOXEL_MM = 2.0
STIM_PER_CLASS = 3
REPEATS_PER_RUN = 2
SOA_RANGE = (4.0, 6.0)
LEAD_S, TAIL_S = 6.0, 16.0
LAYERS = ["conv1", "conv2", "conv3", "fc1", "fc2"]
PLANT = {"roiA": "conv1", "roiB": "fc1", "roiC": None}
#: percent signal change: SD of the stimulus-specific amplitudes, common evoked response
SIGNAL_SD = 2.5
EVOKED = 1.0
#: percent: SD of thermal noise per volume, SD of the confound contribution per voxel
NOISE_SD = 1.0
CONFOUND_SD = 2.0
SEED = 20261123
TRAIN_EPOCHS = 8
CHECKPOINT_EPOCHS = (1, 2, 4)
RANDOM_SEEDS = (1, 2)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _write_tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def choose_stimuli(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``STIM_PER_CLASS`` digits per class, in class order."""
    return np.concatenate(
        [rng.choice(np.flatnonzero(target == c), STIM_PER_CLASS, replace=False) for c in range(10)]
    )


def quantize(images: np.ndarray) -> np.ndarray:
    """Digits (0..16) -> uint8 PNG values; the network sees value / 255 in both training and use."""
    return np.round(images / 16.0 * 255.0).astype(np.uint8)


def train_cnn(images: np.ndarray, target: np.ndarray, seed: int, checkpoint_dir: Path):
    """Train ``digitcnn`` deterministically on uint8 images of shape (n, 8, 8).

    The state after each epoch in :data:`CHECKPOINT_EPOCHS` is saved as
    ``checkpoint_dir/digitcnn_epoch-NN.pt`` (the trajectory of study 5, in miniature).
    """
    import torch

    from nnbrain.models.zoo import build_architecture

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = build_architecture("digitcnn")
    x = torch.tensor(images[:, None] / 255.0, dtype=torch.float32)
    y = torch.tensor(target)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, TRAIN_EPOCHS + 1):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
        if epoch in CHECKPOINT_EPOCHS:
            torch.save(model.state_dict(), checkpoint_dir / f"digitcnn_epoch-{epoch:02d}.pt")
    return model.eval()


def make_geometry():
    """Affine, brain mask and ROI index volume (0 = none, 1..3 = roiA..roiC) on the BOLD grid."""
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = [-(GRID[0] - 1), -(GRID[1] - 1) - 20, -(GRID[2] - 1)]
    ii, jj, kk = np.indices(GRID)
    centre = (np.array(GRID) - 1) / 2
    radii = np.array(GRID) / 2
    mask = (((ii - centre[0]) / radii[0]) ** 2 + ((jj - centre[1]) / radii[1]) ** 2
            + ((kk - centre[2]) / radii[2]) ** 2) <= 1.0
    rois = np.zeros(GRID, dtype=np.uint8)
    rois[2:6, 3:7, 1:7] = 1
    rois[6:10, 3:7, 1:7] = 2
    rois[3:9, 7:10, 2:6] = 3
    rois[~mask] = 0
    return affine, mask, rois


def make_atlas(affine: np.ndarray, rois: np.ndarray):
    """Upsample the ROI volume to a 1 mm atlas grid whose even voxels sit on BOLD voxel centres.

    Fine voxel ``2i`` lies on BOLD voxel ``i`` and ``2i + 1`` halfway to ``i + 1`` (labelled as
    ``i``), so nearest-neighbour resampling to the BOLD grid recovers ``rois`` exactly.
    """
    fine = np.repeat(np.repeat(np.repeat(rois, 2, 0), 2, 1), 2, 2)
    fine_affine = affine.copy()
    fine_affine[:3, :3] = np.eye(3)
    return fine, fine_affine


def trial_schedule(rng: np.random.Generator, n_stim: int):
    """Onsets (s) and stimulus indices of one run: every stimulus REPEATS_PER_RUN times, shuffled."""
    order = np.concatenate([rng.permutation(n_stim) for _ in range(REPEATS_PER_RUN)])
    soas = rng.uniform(*SOA_RANGE, size=order.size)
    onsets = LEAD_S + N_DUMMY * TR + np.concatenate([[0.0], np.cumsum(soas[:-1])])
    n_scans = int(np.ceil((onsets[-1] + TAIL_S) / TR))
    return np.round(onsets, 2), order, n_scans


def trial_regressors(onsets: np.ndarray, n_scans: int) -> np.ndarray:
    """Glover-HRF regressor per trial (duration 1 s), array of shape (n_scans, n_trials)."""
    from nilearn.glm.first_level import compute_regressor

    frame_times = np.arange(n_scans) * TR
    cols = []
    for onset in onsets:
        reg, _ = compute_regressor(
            np.array([[onset], [1.0], [1.0]]), "glover", frame_times, oversampling=50
        )
        cols.append(reg[:, 0])
    return np.stack(cols, axis=1)


def motion(rng: np.random.Generator, n_scans: int) -> np.ndarray:
    """Smooth random-walk motion: 3 translations (mm) then 3 rotations (rad), shape (n_scans, 6)."""
    steps = rng.normal(size=(n_scans, 6)) * np.array([0.04] * 3 + [0.0007] * 3)
    walk = np.cumsum(steps, axis=0)
    kernel = np.ones(3) / 3
    walk = np.stack([np.convolve(walk[:, i], kernel, mode="same") for i in range(6)], axis=1)
    return walk - walk[0]


def cosine_basis(n_scans: int, cutoff_s: float = 128.0) -> np.ndarray:
    """fMRIPrep/SPM discrete cosine high-pass basis without the constant, (n_scans, n_basis)."""
    n_basis = int(np.floor(2 * n_scans * TR / cutoff_s))
    t = np.arange(n_scans)
    basis = [np.sqrt(2.0 / n_scans) * np.cos(np.pi * (t + 0.5) * k / n_scans)
             for k in range(1, n_basis + 1)]
    return np.stack(basis, axis=1) if basis else np.zeros((n_scans, 0))


def confounds_table(params: np.ndarray, bold: np.ndarray, mask: np.ndarray, rois: np.ndarray):
    """fMRIPrep-style confounds: header and rows (``n/a`` where fMRIPrep writes it)."""
    n_scans = params.shape[0]
    names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    columns: dict[str, np.ndarray] = {}
    gs = bold[mask].mean(axis=0)
    edge = mask & (rois == 0)
    columns["global_signal"] = gs
    columns["csf"] = bold[edge].mean(axis=0)
    columns["white_matter"] = bold[edge][::2].mean(axis=0)
    columns["global_signal_derivative1"] = np.r_[np.nan, np.diff(gs)]
    for i, name in enumerate(names):
        x = params[:, i]
        d = np.r_[np.nan, np.diff(x)]
        columns[name] = x
        columns[f"{name}_derivative1"] = d
        columns[f"{name}_power2"] = x ** 2
        columns[f"{name}_derivative1_power2"] = d ** 2
    diffs = np.abs(np.diff(params, axis=0))
    columns["framewise_displacement"] = np.r_[np.nan, diffs[:, :3].sum(1) + 50 * diffs[:, 3:].sum(1)]
    for k, col in enumerate(cosine_basis(n_scans).T):
        columns[f"cosine{k:02d}"] = col
    for k in range(N_DUMMY):
        spike = np.zeros(n_scans)
        spike[k] = 1.0
        columns[f"non_steady_state_outlier{k:02d}"] = spike
    header = list(columns)
    rows = []
    for t in range(n_scans):
        row = []
        for name in header:
            v = columns[name][t]
            row.append("n/a" if np.isnan(v) else (f"{int(v)}" if name.startswith("non_steady")
                                                  else f"{v:.6g}"))
        rows.append(row)
    return header, rows


def confounds_sidecar(header: list[str]) -> dict:
    desc = {}
    for name in header:
        if name.startswith("cosine"):
            desc[name] = {"Method": "Discrete cosine basis", "Cutoff": 128.0}
        elif name.startswith("non_steady_state_outlier"):
            desc[name] = {"Description": "One-hot regressor flagging a non-steady-state volume"}
        else:
            desc[name] = {"Description": f"fMRIPrep-style confound {name} (simulated)"}
    return desc


def planted_amplitudes(acts: dict[str, np.ndarray], rois: np.ndarray, rng: np.random.Generator):
    """Stimulus x voxel amplitudes (percent) for every voxel of the grid, shape (n_stim, n_vox)."""
    n_stim = next(iter(acts.values())).shape[0]
    flat = rois.ravel()
    amps = np.zeros((n_stim, flat.size))
    for index, layer in enumerate(PLANT.values(), start=1):
        voxels = np.flatnonzero(flat == index)
        amps[:, voxels] = EVOKED
        if layer is None:
            continue
        feats = acts[layer] - acts[layer].mean(axis=0)
        mixture = feats @ rng.normal(size=(feats.shape[1], voxels.size))
        amps[:, voxels] += SIGNAL_SD * mixture / mixture.std()
    return amps


def simulate_run(amps, mask, rois, rng, n_stim):
    """One run: events, BOLD (int16, shape GRID + (n_scans,)), confounds header/rows."""
    onsets, order, n_scans = trial_schedule(rng, n_stim)
    x = trial_regressors(onsets, n_scans)
    params = motion(rng, n_scans)
    z = (params - params.mean(0)) / params.std(0)
    n_vox = mask.size
    loadings = rng.normal(size=(6, n_vox))
    loadings *= CONFOUND_SD / np.sqrt(6)
    drift = np.outer(np.linspace(-1, 1, n_scans), rng.normal(0.0, 0.5, n_vox))
    percent = x @ amps[order] + z @ loadings + drift
    s0 = np.where(mask.ravel(), rng.uniform(800, 1200, n_vox), 40.0)
    nss = np.zeros(n_scans)
    nss[:N_DUMMY] = [0.6, 0.25][:N_DUMMY]
    bold = s0[None, :] * (1 + 0.01 * percent + nss[:, None])
    bold += rng.normal(size=bold.shape) * (0.01 * NOISE_SD) * s0[None, :]
    vol = np.round(bold.T.reshape(GRID + (n_scans,))).astype(np.int16)
    header, rows = confounds_table(params, vol.astype(float), mask, rois)
    return onsets, order, vol, header, rows


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, tr: float | None = None) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if tr is not None:
        img.header.set_zooms(img.header.get_zooms()[:3] + (tr,))
    img.header.set_qform(affine, code=4)
    img.header.set_sform(affine, code=4)
    nib.save(img, str(path))


def write_top_level(out: Path) -> None:
    _write_json(out / "dataset_description.json", {
        "Name": "nnbrain demo: digits with planted layer-to-ROI ground truth",
        "BIDSVersion": "1.10.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["nnbrain developers", "scikit-learn developers (digit images)"],
        "GeneratedBy": [{"Name": "nnbrain demo generator",
                         "Description": "datalad_dataset/code/generate_demo.py"}],
    })
    (out / "README").write_text(
        "nnbrain demo dataset\n====================\n\nSimulated event-related fMRI of 3 participants "
        "viewing 30 real handwritten digits\n(scikit-learn's bundled UCI digits), with BOLD "
        "responses planted from a small CNN's layers.\nEverything is generated by "
        "code/generate_demo.py; code/ground_truth.json states the plant.\nderivatives/fmriprep "
        "follows fMRIPrep's layout but is simulated, not produced by fMRIPrep.\n")
    (out / "CHANGES").write_text("1.0.0 2026-11-23\n  - initial release\n")
    _write_tsv(out / "participants.tsv", ["participant_id"], [[f"sub-{s}"] for s in SUBJECTS])
    _write_json(out / "participants.json", {"participant_id": {"Description": "participant"}})
    _write_json(out / f"task-{TASK}_bold.json", {
        "TaskName": TASK, "RepetitionTime": TR,
        "TaskDescription": "passive viewing of handwritten digits, 1 s each, jittered SOA 4-6 s"})
    _write_json(out / f"task-{TASK}_events.json", {
        "stim_file": {"Description": "image shown, relative to stimuli/"},
        "trial_type": {"Description": "digit class shown"}})
    _write_json(out / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "fMRIPrep-layout derivatives (simulated)",
        "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1",
                         "Description": "SIMULATED by code/generate_demo.py in the layout "
                                        "fMRIPrep 24.1 writes; not produced by fMRIPrep"}],
        "SourceDatasets": [{"URL": "../.."}]})
    _write_json(out / "derivatives" / "atlas" / "dataset_description.json", {
        "Name": "nnbrain demo atlas", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "atlas", "Description": "planted ROIs of code/generate_demo.py"}]})


def generate(out: Path) -> dict:
    """Write the whole demo dataset under ``out``; return the ground truth dictionary."""
    import torch
    from PIL import Image
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bids_app"))
    from nnbrain.models.extract import extract_activations

    for stale in ["stimuli", "derivatives"] + [f"sub-{s}" for s in SUBJECTS]:
        shutil.rmtree(out / stale, ignore_errors=True)
    rng = np.random.default_rng(SEED)
    digits = load_digits()
    images = quantize(digits.images)
    stim_idx = choose_stimuli(digits.target, rng)
    train_idx = np.setdiff1d(np.arange(len(images)), stim_idx)
    stim_names = [f"stim{i + 1:02d}.png" for i in range(stim_idx.size)]
    (out / "stimuli").mkdir(parents=True, exist_ok=True)
    for name, idx in zip(stim_names, stim_idx):
        Image.fromarray(images[idx], mode="L").save(out / "stimuli" / name, optimize=False)

    shutil.rmtree(out / "code" / "models", ignore_errors=True)
    model = train_cnn(images[train_idx], digits.target[train_idx], SEED,
                      out / "code" / "models" / "checkpoints")
    weights = out / "code" / "models" / "digitcnn_trained.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    stim_x = images[stim_idx][:, None] / 255.0
    acts = extract_activations(model, stim_x, LAYERS, pooling="channelmean")
    with torch.inference_mode():
        accuracy = float((model(torch.tensor(stim_x, dtype=torch.float32)).argmax(1).numpy()
                          == digits.target[stim_idx]).mean())

    affine, mask, rois = make_geometry()
    atlas, atlas_affine = make_atlas(affine, rois)
    write_top_level(out)
    atlas_dir = out / "derivatives" / "atlas" / "atlas-nnbrainDemo"
    atlas_stem = f"atlas-nnbrainDemo_space-{SPACE}_res-1_dseg"
    write_nifti(atlas_dir / f"{atlas_stem}.nii.gz", atlas, atlas_affine)
    _write_tsv(atlas_dir / f"{atlas_stem}.tsv", ["index", "name"],
               [[i, roi] for i, roi in enumerate(PLANT, start=1)])
    _write_json(atlas_dir / f"{atlas_stem}.json", {"Resolution": "1 mm isotropic",
                                                   "Description": "planted ROIs"})

    truth_subjects = {}
    for sub in SUBJECTS:
        sub_rng = np.random.default_rng([SEED, int(sub)])
        amps = planted_amplitudes(acts, rois, sub_rng)
        for run in RUNS:
            onsets, order, vol, header, rows = simulate_run(amps, mask, rois, sub_rng, len(stim_names))
            base = f"sub-{sub}_task-{TASK}_run-{run}"
            _write_tsv(out / f"sub-{sub}" / "func" / f"{base}_events.tsv",
                       ["onset", "duration", "trial_type", "stim_file"],
                       [[f"{o:.2f}", "1.0", f"digit{digits.target[stim_idx[s]]}", stim_names[s]]
                        for o, s in zip(onsets, order)])
            write_nifti(out / f"sub-{sub}" / "func" / f"{base}_bold.nii.gz", vol, affine, TR)
            prep = out / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
            stem = f"{base}_space-{SPACE}_res-2"
            write_nifti(prep / f"{stem}_desc-preproc_bold.nii.gz", vol, affine, TR)
            _write_json(prep / f"{stem}_desc-preproc_bold.json", {
                "RepetitionTime": TR, "SkullStripped": False, "TaskName": TASK,
                "Sources": [f"bids:raw:sub-{sub}/func/{base}_bold.nii.gz"]})
            write_nifti(prep / f"{stem}_desc-brain_mask.nii.gz", mask.astype(np.uint8), affine)
            _write_json(prep / f"{stem}_desc-brain_mask.json", {"Type": "Brain"})
            _write_tsv(prep / f"{base}_desc-confounds_timeseries.tsv", header, rows)
            _write_json(prep / f"{base}_desc-confounds_timeseries.json", confounds_sidecar(header))
        truth_subjects[f"sub-{sub}"] = {"n_voxels": {r: int((rois == i).sum())
                                                     for i, r in enumerate(PLANT, start=1)}}

    truth = {
        "plant": {roi: layer for roi, layer in PLANT.items()},
        "model": "digitcnn", "weights": "trained", "layers": LAYERS,
        "pooling": "channelmean",
        "signal_sd_percent": SIGNAL_SD, "evoked_percent": EVOKED,
        "noise_sd_percent": NOISE_SD, "confound_sd_percent": CONFOUND_SD,
        "snr_single_trial_amplitude_to_noise_sd": SIGNAL_SD / NOISE_SD,
        "repetitions_per_stimulus": REPEATS_PER_RUN * len(RUNS),
        "tr": TR, "n_stimuli": len(stim_names), "seed": SEED,
        "checkpoint_epochs": list(CHECKPOINT_EPOCHS), "random_seeds": list(RANDOM_SEEDS),
        "trained_accuracy_on_stimuli": accuracy,
        "weights_sha256": sha, "subjects": truth_subjects,
    }
    _write_json(out / "code" / "ground_truth.json", truth)
    spec = (
        "# nnbrain model spec (paths relative to this file)\n"
        "models:\n"
        "  - name: digitcnn\n"
        "    architecture: digitcnn\n"
        "    weights:\n"
        "      - label: trained\n"
        "        file: models/digitcnn_trained.pt\n"
        f"        sha256: \"{sha}\"\n"
        "      - label: ckpt\n"
        "        checkpoints: models/checkpoints/digitcnn_epoch-*.pt\n"
        "      - label: random\n"
        f"        seeds: [{', '.join(map(str, RANDOM_SEEDS))}]\n"
        f"    layers: [{', '.join(LAYERS)}]\n"
        "    pooling: channelmean\n"
        "measures:\n"
        "  rsa: {measure: rsa, rdm: correlation, comparator: tau-a}\n"
        "  cka: {measure: cka, kernel: linear, estimator: unbiased}\n"
        "  ckarbf: {measure: cka, kernel: rbf, estimator: unbiased, sigma: 1.0}\n"
        "  nss: {measure: nss, cka: ckarbf, reference: random}\n"
    )
    (out / "code" / "model_spec.yaml").write_text(spec)
    return truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=HERE.parent,
                        help="dataset root to (re)write (default: datalad_dataset/)")
    args = parser.parse_args(argv)
    truth = generate(args.out.resolve())
    print(json.dumps({k: truth[k] for k in ("plant", "weights_sha256",
                                            "trained_accuracy_on_stimuli")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
