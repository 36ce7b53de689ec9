"""The dependency rule: core imports neither nipype nor pybids (nor torch) at import time."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import nnbrain.core

CORE_MODULES = sorted(m.name for m in pkgutil.iter_modules(nnbrain.core.__path__))


def test_core_modules_found() -> None:
    assert {"cka", "compare", "permutation", "rdm", "roi"} <= set(CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_framework(module: str) -> None:
    code = (f"import sys, nnbrain.core.{module}; "
            "bad = sorted(m for m in ('nipype', 'bids', 'torch', 'nilearn', 'datalad') "
            "if m in sys.modules); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"nnbrain.core.{module} imports {out.stdout.strip()}"


def test_cli_help_does_not_import_torch_or_nipype() -> None:
    code = ("import sys; from nnbrain.cli.run import main; main(['--help']); "
            "print(','.join(m for m in ('torch', 'nipype', 'datalad') if m in sys.modules), "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == ""
