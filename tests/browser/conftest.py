"""Real JupyterLab (and Notebook 7) in Debian's Chromium, driven by Playwright (tests marked
``browser``).

The tests skip only when /usr/bin/chromium is missing (CI installs it from .ci/browser-deps).
The server runs on 127.0.0.1 with a random token, isolated settings/workspaces, every
phone-home feature off, and this checkout's built lab extension ahead of an installed one;
screenshots go to test-artifacts/.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]
LAB_START_TIMEOUT = 90.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} not installed (apt-get install chromium; "
                                   "CI installs the packages in .ci/browser-deps)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_settings(settings_dir: Path) -> None:
    """User settings that keep the lab quiet: no news/update checks, no toasts to dismiss."""
    notif = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True, exist_ok=True)
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


class Lab:
    """A running Jupyter server (JupyterLab or Notebook 7)."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log
        self.ui_path = "lab"  # where its notebooks open: lab/tree/<path> or notebooks/<path>

    @property
    def is_lab(self) -> bool:
        """JupyterLab (True) or Notebook 7 (False): a few steps exist in one of them only."""
        return self.ui_path == "lab"

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path}{sep}token={self.token}"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def _checkout_extension(base: Path) -> str:
    """A JUPYTER_PATH whose labextensions/ holds this checkout's built extension: found
    before the installed copy, so the tests run the extension built from this tree."""
    path = base / "jupyter_path"
    (path / "labextensions").mkdir(parents=True)
    (path / "labextensions" / "nimm-jupyter").symlink_to(ROOT / "nimm_jupyter" / "labextension")
    return os.pathsep.join([str(path)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p])


def _serve(base: Path, app: list[str], ui_path: str) -> Iterator[Lab]:
    """Start ``jupyter <app>`` on a free port over a copy of the fixtures; yield it running."""
    root = base / "notebooks"
    shutil.copytree(FIXTURES, root)
    for name in ("config", "data", "settings", "workspaces", "runtime"):
        (base / name).mkdir()
    _write_settings(base / "settings")
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_PATH": _checkout_extension(base),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        "NIMM_DATA_DIR": os.environ.get("NIMM_DATA_DIR", str(ROOT.parent / "shared" / "data")),
    })
    env.pop("ANTHROPIC_API_KEY", None)
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(bindir / "jupyter"), *app, "--no-browser", "--allow-root",
           f"--ServerApp.token={token}", "--ServerApp.ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--notebook-dir={root}"]
    log = base / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Lab(root, port, token, proc, log)
    try:
        deadline = time.time() + LAB_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter {app[0]} exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url("api/status"), timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"jupyter {app[0]} did not start in {LAB_START_TIMEOUT:.0f}s:\n"
                            f"{server.log_tail()}")
            time.sleep(0.3)
        server.ui_path = ui_path
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab, every phone-home feature off, the app on ``window.jupyterapp``."""
    yield from _serve(tmp_path_factory.mktemp("lab"), [
        "lab", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True"], "lab")


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Jupyter Notebook 7 (skips when the ``notebook`` package is not installed)."""
    pytest.importorskip("notebook", minversion="7")
    yield from _serve(tmp_path_factory.mktemp("nb7"), [
        "notebook", "--JupyterNotebookApp.expose_app_in_browser=True"], "notebooks")


@pytest.fixture(params=["lab", "notebook7"])
def front_end(request: pytest.FixtureRequest) -> Lab:
    """Each front end in turn (JupyterLab, then Notebook 7), for the behaviours both must
    show; a test asks for ``lab`` or ``notebook7`` directly when it needs one front end."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page (the test asks for the server it needs: ``lab``, ``notebook7`` or
    ``front_end``)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.console_messages = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: pg.console_messages.append((m.type, m.text)))
    pg.on("pageerror", lambda e: pg.console_messages.append(("pageerror", str(e))))
    try:
        yield pg
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"))
        except Exception:
            pass
        # what the page logged (uncaught errors included): the first place to look on a failure
        (ARTIFACTS / f"{request.node.name}-console.txt").write_text(
            "\n".join(f"{t}: {m}" for t, m in pg.console_messages))
        context.close()
