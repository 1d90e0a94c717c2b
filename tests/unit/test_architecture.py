"""The layout's rules, checked: the import contracts, one docstring line per module, no oversized module."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contract", "config", "ingest", "stream", "warehouse", "chserver", "dashboards", "embedded", "flowtools",
            "flowscope")
MAX_LINES = 500
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def test_import_contracts_are_kept() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 7 kept, 0 broken." in result.stdout, result.stdout


def test_every_package_is_checked_and_installed() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for package in PACKAGES:
        assert f'"{package}"' in text.split("[tool.importlinter]")[1].split("[[tool.importlinter.contracts]]")[0]
    top_level = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()} - {"tests"}
    assert top_level == set(PACKAGES)
    installed = tomllib.loads(text)["tool"]["setuptools"]["packages"]
    every = {str(init.parent.relative_to(ROOT)).replace("/", ".") for package in PACKAGES
             for init in (ROOT / package).rglob("__init__.py")}
    assert every == set(installed)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert {package for package in PACKAGES if f"COPY {package} ./{package}" not in dockerfile} == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_module_says_what_it_is_and_is_readable_in_one_sitting(path: Path) -> None:
    source = path.read_text()
    docstring = ast.get_docstring(ast.parse(source))
    assert docstring, "opens with a docstring saying what it is"
    assert docstring.splitlines()[0].strip(), "whose first line says it"
    assert len(source.splitlines()) <= MAX_LINES
