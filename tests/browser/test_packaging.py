"""The prebuilt JupyterLab extension ships inside the package (no Node.js needed to install)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import nimm_jupyter

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
BUILT = Path(nimm_jupyter.__file__).parent / "labextension"


def test_built_extension_is_present_and_loadable():
    (path,) = nimm_jupyter._jupyter_labextension_paths()
    assert path == {"src": "labextension", "dest": "nimm-jupyter"}
    meta = json.loads((BUILT / "package.json").read_text())
    assert meta["name"] == "nimm-jupyter"
    build = meta["jupyterlab"]["_build"]
    assert (BUILT / build["load"]).is_file(), "rebuild with `cd labextension && jlpm build`"
    assert build["extension"] == "./extension"


def test_built_extension_matches_its_source_package():
    source = json.loads((ROOT / "labextension" / "package.json").read_text())
    built = json.loads((BUILT / "package.json").read_text())
    for key in ("name", "version", "dependencies"):
        assert built[key] == source[key], f"stale build: {key} differs; run `jlpm build` in labextension/"


def test_wheel_installs_it_where_jupyterlab_looks():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = config["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["nimm_jupyter/labextension"] == "share/jupyter/labextensions/nimm-jupyter"
    assert shared["labextension/install.json"].endswith("labextensions/nimm-jupyter/install.json")
    install = json.loads((ROOT / "labextension" / "install.json").read_text())
    assert install["packageManager"] == "python"
