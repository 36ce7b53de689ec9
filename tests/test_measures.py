"""The spec's ``measures``: defaults, parsing, exact error messages, references, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnbrain.errors import DataError
from nnbrain.measures import DEFAULT_MEASURES, Measure, descriptions, resolve_measures
from nnbrain.spec import load_measures, load_model_spec

MODEL = """models:
  - name: net
    architecture: digitcnn
    weights:
      - {label: random, seeds: [1, 2]}
      - {label: other, seed: 5}
    layers: [conv1, fc1]
"""
TRAINED = "      - {label: trained, file: w.pt}\n"
WEIGHTS = (Path(__file__).resolve().parents[1] / "datalad_dataset" / "code" / "models"
           / "digitcnn_trained.pt")


def _load(tmp_path: Path, measures: str) -> tuple[Measure, ...]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(MODEL + measures)
    return load_measures(spec, load_model_spec(spec))


def test_default_measures_without_the_key(tmp_path: Path) -> None:
    measures = _load(tmp_path, "")
    assert measures == DEFAULT_MEASURES
    assert [(m.label, m.kind) for m in measures] == [("rsa", "rsa"), ("cka", "cka"),
                                                     ("ckarbf", "cka"), ("nss", "nss")]
    rsa, cka, ckarbf, nss = measures
    assert (rsa.rdm, rsa.comparator, rsa.bootstrap) == ("correlation", "tau-a", 1000)
    assert (cka.kernel, cka.unbiased) == ("linear", True)
    assert (ckarbf.kernel, ckarbf.unbiased, ckarbf.sigma) == ("rbf", True, 1.0)
    assert nss.cka == "ckarbf" and nss.reference == ""


def test_measures_parsed_in_spec_order(tmp_path: Path) -> None:
    measures = _load(tmp_path, """measures:
  k2: {measure: cka, kernel: rbf, sigma: 2, estimator: biased, permutations: 0, bootstrap: 50}
  r: {measure: rsa, rdm: euclidean, comparator: spearman, permutations: 99}
  s: {measure: nss, reference: random}
""")
    assert [m.label for m in measures] == ["k2", "r", "s"]
    k2, r, s = measures
    assert (k2.kernel, k2.sigma, k2.unbiased, k2.permutations, k2.bootstrap) == (
        "rbf", 2.0, False, 0, 50)
    assert (r.rdm, r.comparator, r.permutations) == ("euclidean", "spearman", 99)
    assert s.cka == "k2" and s.reference == "random"  # the first cka measure by default
    resolved = resolve_measures(measures, 1000)
    assert [m.permutations for m in resolved] == [0, 99, None]
    assert resolve_measures(DEFAULT_MEASURES, 77)[0].permutations == 77


BAD = [
    ("unknown measure kind", "measures:\n  x: {measure: pca}\n",
     "measures.x.measure: 'pca' is not allowed; choose from rsa, cka, nss"),
    ("missing kind", "measures:\n  x: {kernel: rbf}\n",
     "measures.x: missing required key 'measure'"),
    ("bad comparator", "measures:\n  x: {measure: rsa, comparator: kendall}\n",
     "measures.x.comparator: 'kendall' is not allowed; choose from tau-a, tau-b, rho-a, "
     "spearman, pearson, cosine"),
    ("crossnobis not in the pipeline", "measures:\n  x: {measure: rsa, rdm: crossnobis}\n",
     "measures.x.rdm: 'crossnobis' is not allowed; choose from euclidean, correlation, cosine"),
    ("negative sigma", "measures:\n  x: {measure: cka, sigma: -1}\n",
     "measures.x.sigma: must be > 0, got -1"),
    ("misspelt key", "measures:\n  x: {measure: cka, kernal: rbf}\n",
     "measures.x: unknown key 'kernal' (did you mean 'kernel'?); allowed: measure, rdm, "
     "comparator, kernel, estimator, sigma, permutations, bootstrap, cka, reference"),
    ("key of another kind", "measures:\n  x: {measure: cka, comparator: tau-a}\n",
     "measures.x: 'comparator' does not apply to a cka measure; cka takes kernel, estimator, "
     "sigma, permutations, bootstrap"),
    ("label not alphanumeric", "measures:\n  ck-a: {measure: cka}\n",
     "measures: a measure label becomes desc-<label> in file names: letters and digits only, "
     "got 'ck-a'"),
    ("label reserved for group", "measures:\n  ckaMean: {measure: cka}\n",
     "measures.ckaMean: labels ending in 'Mean' (any case) are kept for the group tables "
     "(desc-<label>Mean); rename it"),
    ("label clashing by case with a group table", "measures:\n  ckamean: {measure: cka}\n",
     "measures.ckamean: labels ending in 'Mean' (any case) are kept for the group tables "
     "(desc-<label>Mean); rename it"),
    ("labels differing in case", "measures:\n  cka: {measure: cka}\n  CKA: {measure: cka}\n",
     "measures: 'cka' and 'CKA' differ only in case; file names must differ on every file "
     "system"),
    ("empty mapping", "measures: {}\n",
     "measures: must not be empty (leave it out for the default measures)"),
    ("nss without cka", "measures:\n  r: {measure: rsa}\n  s: {measure: nss}\n",
     "measures.s: an nss measure scores a cka measure; add one (e.g. cka: {measure: cka, "
     "kernel: rbf})"),
    ("nss of an rsa measure", "measures:\n  r: {measure: rsa}\n  k: {measure: cka}\n"
                              "  s: {measure: nss, cka: r}\n",
     "measures.s.cka: 'r' is not a cka measure of this spec; cka measures: k"),
    ("unknown reference", "measures:\n  k: {measure: cka}\n  s: {measure: nss, reference: rnd}\n",
     "measures.s.reference: 'rnd' is not a weights label of model 'net'; its labels: other, "
     "random, random1, random2"),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_measures_exact_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        _load(tmp_path, text)
    assert str(info.value) == f"{tmp_path / 'spec.yaml'}: {message}"
    assert info.value.exit_code == 65


def test_reference_must_be_random(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(WEIGHTS.read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text(MODEL.replace("    layers:", TRAINED + "    layers:") + "measures:\n  k: {measure: cka}\n"
                    "  s: {measure: nss, reference: trained}\n")
    with pytest.raises(DataError, match="'trained' of model 'net' is not random-init weights"):
        load_measures(spec, load_model_spec(spec))


def test_round_trip_and_sidecar_parameters() -> None:
    for m in DEFAULT_MEASURES:
        assert Measure.from_dict(m.to_dict()) == m
    rsa, cka, ckarbf, nss = resolve_measures(DEFAULT_MEASURES, 500)
    assert rsa.parameters() == {"RDM": "correlation", "Comparator": "tau-a",
                                "Permutations": 500, "BootstrapSamples": 1000}
    assert cka.parameters()["Kernel"] == "linear" and "Sigma" not in cka.parameters()
    assert ckarbf.parameters()["Sigma"] == 1.0
    assert nss.parameters() == {"CKA": "ckarbf", "Reference": "every random-seed source"}
    assert set(descriptions(DEFAULT_MEASURES)) == {
        "rsa", "rsaMean", "cka", "ckaMean", "ckarbf", "ckarbfMean", "nss", "nssMean"}


def test_continuous_design_drops_or_refuses_rsa(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(MODEL)
    models = load_model_spec(spec)
    assert [m.label for m in load_measures(spec, models, "continuous")] == ["cka", "ckarbf",
                                                                            "nss"]
    spec.write_text(MODEL + "measures:\n  k: {measure: cka}\n  r: {measure: rsa}\n")
    with pytest.raises(DataError) as info:
        load_measures(spec, models, "continuous")
    assert str(info.value) == (f"{spec}: measures.r: rsa compares RDMs between stimuli, which a "
                               "continuous design does not have; remove it (or use --design "
                               "event)")
    assert [m.label for m in load_measures(spec, models, "event")] == ["k", "r"]


def test_nss_without_any_random_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(WEIGHTS.read_bytes())
    spec = tmp_path / "spec.yaml"
    spec.write_text("""models:
  - name: net
    architecture: digitcnn
    weights: [{label: trained, file: w.pt}]
    layers: [conv1]
measures:
  k: {measure: cka}
  s: {measure: nss}
""")
    with pytest.raises(DataError) as info:
        load_measures(spec, load_model_spec(spec))
    assert str(info.value) == (
        f"{spec}: measures.s: the neural similarity score compares each network with its "
        "random-init weights, and no model has any; add a random weights source (e.g. "
        "{label: random, seeds: [1, 2]}) or drop the nss measure")
    spec.write_text(spec.read_text().replace("  s: {measure: nss}\n", ""))
    assert [m.label for m in load_measures(spec, load_model_spec(spec))] == ["k"]
    spec.write_text(spec.read_text().split("measures:")[0])  # defaults: nss dropped
    assert [m.label for m in load_measures(spec, load_model_spec(spec))] == ["rsa", "cka",
                                                                            "ckarbf"]
