"""The layering in pyproject.toml ([tool.importlinter]) holds: an app imports only from the apps below it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_the_import_contracts_are_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_an_upward_import_breaks_the_layering(monkeypatch, tmp_path):
    # The same contract with audit on top: connectors (and others) import audit, so it must break.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]["layers"]
    upside_down = tmp_path / ".importlinter"
    upside_down.write_text(
        "[importlinter]\nroot_packages =\n    "
        + "\n    ".join(config["root_packages"])
        + "\n\n[importlinter:contract:layers]\nname = upside down\ntype = layers\nlayers =\n    "
        + "\n    ".join(reversed(layers))
        + "\n"
    )
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(upside_down), no_cache=True) == 1
