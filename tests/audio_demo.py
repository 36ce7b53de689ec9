"""A small audio BIDS dataset with a planted layer-to-ROI ground truth, for whole-app tests.

:func:`generate` writes, deterministically (seeded), under a root directory:

- ``stimuli/clipNN.wav``: :data:`N_CLIPS` synthetic sounds, 0.5-0.8 s, 16 kHz mono PCM-16 WAV:
  pure tones, exponential chirps up and down, harmonic complexes with different spectral tilts,
  band-pass noise bursts with different spectral envelopes, and amplitude-modulated tones and
  noise (:func:`synthesize_clips`);
- ``code/models/wordcnn_trained.pt``: the state_dict of ``word_cnn2d`` built with seed 3
  (a stand-in for trained weights, different from the random seeds 1 and 2 of the spec);
- ``code/model_spec.yaml``: ``word_cnn2d`` on 32 log-mel bands x 32 frames at a 25 ms hop
  (0.8 s fills the 32 frames; shorter clips are centred and padded with silence), weights
  ``trained`` + ``random`` seeds [1, 2], layers ``conv1, fc1, fc2``, measures rsa
  (correlation RDM, tau-a), cka (linear, unbiased) and nss;
- raw BIDS (``sub-0X/func/*_bold.nii.gz``, ``*_events.tsv`` with ``stim_file``: every clip twice
  per run, 3 runs, 2 subjects; ``duration`` is the 1 s of the simulated response),
  fMRIPrep-layout derivatives (preprocessed BOLD, brain mask, confounds TSV and JSON) and a 1 mm
  dseg atlas derivative with ROIs roiA, roiB, roiC;
- ``code/ground_truth.json``.

The plant: the 'trained' network's channel-mean activations for the clips, computed with
nnbrain's own loader (:func:`nnbrain.models.stimuli.load_stimuli`,
:func:`nnbrain.models.extract.extract_activations`), drive roiA (a noisy linear mixture of
``conv1``), roiB (of ``fc1``); roiC has an evoked response identical for every clip.

Design choices, measured on this dataset:

- ``conv2`` and ``pool`` are not in the spec: on unnormalised log-mel input every conv layer's
  channel means are nearly one-dimensional (first PC > 99 % of the variance) and their RDMs
  correlate 0.96-0.98 with ``conv1``'s, so "peaks at conv1" would be a coin toss. ``conv1`` vs
  ``fc1`` correlate ~0.7, ``fc1`` vs ``fc2`` ~0.5.
- 3 runs (6 repetitions per clip), not 2: nnbrain regresses confounds out of the BOLD before
  the single-trial GLM, which shrinks each trial's beta (to 0.26-0.77 of its value here) and
  leaks neighbouring trials into it (up to 0.3); more repetitions average the leak out. More
  signal (:data:`SIGNAL_GAIN` 3 or 4) did not help: the leak scales with the signal.

Geometry, trial schedule, HRF regressors, motion, confounds, BOLD simulation and the NIfTI/TSV/JSON
writers are those of ``datalad_dataset/code/generate_demo.py`` (imported, not copied).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_GENERATOR = ROOT / "datalad_dataset" / "code" / "generate_demo.py"
TASK = "sounds"
SUBJECTS = ("01", "02")
RUNS = ("01", "02", "03")
SAMPLE_RATE = 16000
N_CLIPS = 20
DURATION_RANGE = (0.5, 0.8)
SEED = 20261207
ARCHITECTURE = "word_cnn2d"
MODEL = "wordcnn"
#: Layers of the spec; the plant (roi -> layer) is the demo generator's ``PLANT``.
LAYERS = ["conv1", "fc1", "fc2"]
TRAINED_SEED = 3
RANDOM_SEEDS = (1, 2)
#: log-mel settings: 32 bands (the input's n_freq) at a 25 ms hop, so 0.8 s = 33 frames -> 32
AUDIO = {"n_mels": 32, "hop_ms": 25.0, "win_ms": 25.0}
#: Multiplies the demo generator's stimulus-specific amplitudes (``SIGNAL_SD`` = 2.5 % at
#: ``NOISE_SD`` = 1 %), to 5 %: 20 clips give fewer pairs than the demo's 30 digits, and
#: ``conv1`` and ``fc1`` of this network are more alike (RDM correlation ~0.7).
SIGNAL_GAIN = 2.0


def demo_generator() -> ModuleType:
    """The demo dataset's generator script as a module (it is not a package module)."""
    name = "nnbrain_generate_demo"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DEMO_GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- sounds


def _ramp(signal: np.ndarray, ramp_s: float = 0.01) -> np.ndarray:
    """Raised-cosine onset and offset ramps (no clicks)."""
    n = min(int(ramp_s * SAMPLE_RATE), signal.size // 2)
    if n < 1:
        return signal
    window = np.ones(signal.size)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    window[:n], window[-n:] = edge, edge[::-1]
    return signal * window


def _bandpass_noise(rng: np.random.Generator, n: int, centre: float, width_oct: float,
                    slope_db_oct: float = 0.0) -> np.ndarray:
    """Gaussian noise shaped in the frequency domain: a log-Gaussian band and a spectral tilt."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(freqs, 1.0) / centre)
    gain = np.exp(-0.5 * (octaves / width_oct) ** 2) * 10 ** (slope_db_oct * octaves / 20)
    gain[freqs < 50] = 0.0
    return np.fft.irfft(spectrum * gain, n)


def _harmonic(t: np.ndarray, f0: float, tilt_db_oct: float, n_harm: int = 20) -> np.ndarray:
    """Harmonics of ``f0`` below Nyquist, sine phase, amplitude tilted by ``tilt_db_oct``."""
    out = np.zeros_like(t)
    for k in range(1, n_harm + 1):
        if k * f0 < SAMPLE_RATE / 2 - 200:
            out += 10 ** (tilt_db_oct * np.log2(k) / 20) * np.sin(2 * np.pi * k * f0 * t)
    return out


def synthesize_clips(rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """:data:`N_CLIPS` (family, waveform) pairs; waveforms at :data:`SAMPLE_RATE`, peak <= 0.9.

    Families (4 each): ``tone`` (pure tones 250 Hz - 5 kHz), ``chirp`` (exponential sweeps
    up and down), ``harmonic`` (complexes on f0 100-400 Hz, spectral tilt -12..+3 dB/oct),
    ``noise`` (band-pass noise, centre 300 Hz - 5 kHz, widths 0.3-2 octaves), ``am`` (tones and
    noise, amplitude-modulated at 4-40 Hz). Levels vary over 12 dB.
    """
    families = {
        "tone": [{"f": f} for f in (250.0, 700.0, 1800.0, 5000.0)],
        "chirp": [{"f0": 200.0, "f1": 3000.0}, {"f0": 4000.0, "f1": 300.0},
                  {"f0": 800.0, "f1": 6000.0}, {"f0": 1500.0, "f1": 500.0}],
        "harmonic": [{"f0": 100.0, "tilt": -12.0}, {"f0": 150.0, "tilt": -3.0},
                     {"f0": 250.0, "tilt": 3.0}, {"f0": 400.0, "tilt": -6.0}],
        "noise": [{"centre": 300.0, "width": 0.5, "slope": 0.0},
                  {"centre": 1000.0, "width": 2.0, "slope": -6.0},
                  {"centre": 2500.0, "width": 0.3, "slope": 0.0},
                  {"centre": 5000.0, "width": 1.0, "slope": 3.0}],
        "am": [{"carrier": 500.0, "rate": 4.0}, {"carrier": 2000.0, "rate": 12.0},
               {"carrier": None, "rate": 8.0, "centre": 800.0},
               {"carrier": None, "rate": 40.0, "centre": 3000.0}],
    }
    clips = []
    for family, items in families.items():
        for item in items:
            duration = rng.uniform(*DURATION_RANGE)
            n = int(round(duration * SAMPLE_RATE))
            t = np.arange(n) / SAMPLE_RATE
            if family == "tone":
                x = np.sin(2 * np.pi * item["f"] * t + rng.uniform(0, 2 * np.pi))
            elif family == "chirp":
                ratio = item["f1"] / item["f0"]
                phase = item["f0"] * duration / np.log(ratio) * (ratio ** (t / duration) - 1)
                x = np.sin(2 * np.pi * phase)
            elif family == "harmonic":
                x = _harmonic(t, item["f0"], item["tilt"])
            elif family == "noise":
                x = _bandpass_noise(rng, n, item["centre"], item["width"], item["slope"])
            else:
                carrier = (np.sin(2 * np.pi * item["carrier"] * t) if item["carrier"]
                           else _bandpass_noise(rng, n, item["centre"], 1.0))
                x = carrier * (0.5 + 0.5 * np.sin(2 * np.pi * item["rate"] * t - np.pi / 2))
            x = _ramp(x)
            level = 10 ** (rng.uniform(-12.0, 0.0) / 20)
            clips.append((family, 0.9 * level * x / np.abs(x).max()))
    assert len(clips) == N_CLIPS
    return clips


# --------------------------------------------------------------------------- model


def model_spec_text(weights_file: str = "models/wordcnn_trained.pt") -> str:
    """The model spec (YAML; paths relative to ``code/``)."""
    audio = ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}"
                      for k, v in AUDIO.items())
    return (
        "# nnbrain model spec of the audio test dataset (tests/audio_demo.py)\n"
        "models:\n"
        f"  - name: {MODEL}\n"
        f"    architecture: {ARCHITECTURE}\n"
        "    weights:\n"
        "      - label: trained\n"
        f"        file: {weights_file}\n"
        "      - label: random\n"
        f"        seeds: [{', '.join(map(str, RANDOM_SEEDS))}]\n"
        f"    layers: [{', '.join(LAYERS)}]\n"
        "    pooling: channelmean\n"
        "    preprocessing:\n"
        f"      audio: {{{audio}}}\n"
        "measures:\n"
        "  rsa: {measure: rsa, rdm: correlation, comparator: tau-a}\n"
        "  cka: {measure: cka, kernel: linear, estimator: unbiased}\n"
        "  nss: {measure: nss, cka: cka, reference: random}\n"
    )


def planted_activations(spec: Path, stimuli_dir: Path) -> dict[str, np.ndarray]:
    """Activations of the spec's 'trained' network for its stimuli, as nnbrain computes them.

    The spec is read with nnbrain's own loader (:func:`nnbrain.spec.load_model_spec`), the
    clips with :func:`nnbrain.models.stimuli.load_stimuli` (log-mel, centre-crop/pad), the
    layers with :func:`nnbrain.models.extract.extract_activations` (the spec's pooling,
    channel mean).

    Returns
    -------
    dict of layer -> array of shape (n_clips, n_units), clips in sorted file-name order
    """
    from nnbrain.models.extract import extract_activations
    from nnbrain.models.loading import load_trained
    from nnbrain.models.stimuli import load_stimuli
    from nnbrain.models.zoo import build_from_dict
    from nnbrain.spec import load_model_spec

    (model_spec,) = load_model_spec(spec)
    entry = model_spec.to_dict()
    trained = [w for w in entry["weights"] if w["label"] == "trained"][0]
    model = build_from_dict(entry)
    load_trained(model, Path(trained["file"]))
    model.eval()
    inputs = load_stimuli(sorted(stimuli_dir.glob("*.wav")), entry)
    return extract_activations(model, inputs, list(entry["layers"]),
                               pooling=entry["layer_pooling"])


# --------------------------------------------------------------------------- dataset


def _write_top_level(out: Path, gd: ModuleType) -> None:
    gd._write_json(out / "dataset_description.json", {
        "Name": "nnbrain audio test: synthetic sounds with a planted layer-to-ROI ground truth",
        "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": "CC0",
        "Authors": ["nnbrain developers"],
        "GeneratedBy": [{"Name": "nnbrain audio test generator",
                         "Description": "tests/audio_demo.py"}]})
    (out / "README").write_text("Simulated event-related fMRI of synthetic sounds; generated by "
                                "nnbrain's tests/audio_demo.py.\n")
    gd._write_tsv(out / "participants.tsv", ["participant_id"], [[f"sub-{s}"] for s in SUBJECTS])
    gd._write_json(out / f"task-{TASK}_bold.json", {
        "TaskName": TASK, "RepetitionTime": gd.TR,
        "TaskDescription": "passive listening to synthetic sounds, jittered SOA 4-6 s"})
    gd._write_json(out / f"task-{TASK}_events.json", {
        "stim_file": {"Description": "sound played, relative to stimuli/"},
        "duration": {"Description": "duration (s) of the simulated neural response: 1 s for "
                                    "every clip (the clips last 0.5-0.8 s)"},
        "trial_type": {"Description": "sound family"}})
    gd._write_json(out / "derivatives" / "fmriprep" / "dataset_description.json", {
        "Name": "fMRIPrep-layout derivatives (simulated)", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "24.1.1",
                         "Description": "SIMULATED by tests/audio_demo.py"}],
        "SourceDatasets": [{"URL": "../.."}]})
    gd._write_json(out / "derivatives" / "atlas" / "dataset_description.json", {
        "Name": "nnbrain audio test atlas", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "atlas", "Description": "planted ROIs"}]})


def generate(out: Path) -> dict:
    """Write the audio dataset under ``out`` (created); return its ground truth.

    Returns
    -------
    dict
        ``plant`` (roi -> layer or None), ``stimuli`` (file names), ``families``, ``durations``,
        ``subjects`` (per subject: ``n_voxels`` per ROI), ``spec`` (path of the model spec),
        ``weights`` (path of the trained state_dict), ``activations`` (layer -> array).
    """
    import soundfile
    import torch

    from nnbrain.models.zoo import build_architecture

    gd = demo_generator()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    clips = synthesize_clips(rng)
    names = [f"clip{i + 1:02d}.wav" for i in range(len(clips))]
    paths = [out / "stimuli" / name for name in names]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, (_family, wave) in zip(paths, clips):
        soundfile.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")

    weights = out / "code" / "models" / "wordcnn_trained.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_architecture(ARCHITECTURE, seed=TRAINED_SEED).state_dict(), weights)
    spec = out / "code" / "model_spec.yaml"
    spec.write_text(model_spec_text())
    acts = planted_activations(spec, out / "stimuli")
    missing = [layer for layer in gd.PLANT.values() if layer is not None and layer not in acts]
    if missing:
        raise RuntimeError(f"the demo generator's PLANT names layers {missing} that are not in "
                           f"this dataset's LAYERS {LAYERS}")

    affine, mask, rois = gd.make_geometry()
    atlas, atlas_affine = gd.make_atlas(affine, rois)
    _write_top_level(out, gd)
    atlas_dir = out / "derivatives" / "atlas" / "atlas-nnbrainDemo"
    atlas_stem = f"atlas-nnbrainDemo_space-{gd.SPACE}_res-1_dseg"
    gd.write_nifti(atlas_dir / f"{atlas_stem}.nii.gz", atlas, atlas_affine)
    gd._write_tsv(atlas_dir / f"{atlas_stem}.tsv", ["index", "name"],
                  [[i, roi] for i, roi in enumerate(gd.PLANT, start=1)])

    subjects = {}
    for sub in SUBJECTS:
        sub_rng = np.random.default_rng([SEED, int(sub)])
        amps = gd.planted_amplitudes(acts, rois, sub_rng)
        evoked = gd.EVOKED * (rois.ravel() > 0)
        amps = evoked + SIGNAL_GAIN * (amps - evoked)
        for run in RUNS:
            onsets, order, vol, header, rows = gd.simulate_run(amps, mask, rois, sub_rng,
                                                               len(names))
            base = f"sub-{sub}_task-{TASK}_run-{run}"
            func = out / f"sub-{sub}" / "func"
            gd._write_tsv(func / f"{base}_events.tsv",
                          ["onset", "duration", "trial_type", "stim_file"],
                          [[f"{o:.2f}", "1.0", clips[s][0],
                            names[s]] for o, s in zip(onsets, order)])
            gd.write_nifti(func / f"{base}_bold.nii.gz", vol, affine, gd.TR)
            prep = out / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
            stem = f"{base}_space-{gd.SPACE}_res-2"
            gd.write_nifti(prep / f"{stem}_desc-preproc_bold.nii.gz", vol, affine, gd.TR)
            gd._write_json(prep / f"{stem}_desc-preproc_bold.json", {
                "RepetitionTime": gd.TR, "SkullStripped": False, "TaskName": TASK,
                "Sources": [f"bids:raw:sub-{sub}/func/{base}_bold.nii.gz"]})
            gd.write_nifti(prep / f"{stem}_desc-brain_mask.nii.gz", mask.astype(np.uint8),
                           affine)
            gd._write_json(prep / f"{stem}_desc-brain_mask.json", {"Type": "Brain"})
            gd._write_tsv(prep / f"{base}_desc-confounds_timeseries.tsv", header, rows)
            gd._write_json(prep / f"{base}_desc-confounds_timeseries.json",
                           gd.confounds_sidecar(header))
        subjects[f"sub-{sub}"] = {"n_voxels": {roi: int((rois == i).sum())
                                               for i, roi in enumerate(gd.PLANT, start=1)}}
    truth = {"plant": dict(gd.PLANT), "model": MODEL, "weights": "trained", "layers": LAYERS,
             "stimuli": names, "families": [family for family, _ in clips],
             "durations": [round(len(w) / SAMPLE_RATE, 4) for _, w in clips],
             "audio": dict(AUDIO), "signal_sd_percent": gd.SIGNAL_SD * SIGNAL_GAIN,
             "evoked_percent": gd.EVOKED, "noise_sd_percent": gd.NOISE_SD,
             "subjects": subjects}
    gd._write_json(out / "code" / "ground_truth.json", truth)
    return {**truth, "spec": spec, "weights_file": weights, "activations": acts}


if __name__ == "__main__":
    result = generate(Path(sys.argv[1]).resolve())
    print(json.dumps({k: result[k] for k in ("plant", "stimuli", "durations")}, indent=1))
