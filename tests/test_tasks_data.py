"""Data cache: registry checksums, cache hits, checksum errors and offline downloads."""
from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.error
from pathlib import Path

import pytest

from nimm_jupyter.tasks import data
from nimm_jupyter.tasks.data import (
    REGISTRY, DataChecksumError, DataDownloadError, RemoteFile, UnknownDataFileError,
    data_dir, fetch, sha256_of,
)

PAYLOAD = b"week,value\n1,2\n" * 100


def _entry(url: str, payload: bytes = PAYLOAD) -> RemoteFile:
    return RemoteFile(url, hashlib.sha256(payload).hexdigest(), len(payload))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NIMM_DATA_DIR", str(root))
    return root


@pytest.fixture
def server(tmp_path):
    """A tiny HTTP server on 127.0.0.1 serving tmp_path/www; counts GET requests."""
    www = tmp_path / "www"
    www.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def test_data_dir_prefers_env_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("NIMM_DATA_DIR", str(tmp_path / "x"))
    assert data_dir() == tmp_path / "x"
    monkeypatch.delenv("NIMM_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "nimm-jupyter" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "nimm-jupyter" / "data"


def test_registry_matches_the_shared_files(data_dir):
    assert {k.split("/")[0] for k in REGISTRY} == {"influenza_usa", "hea_fcc_rt_yield", "hea_bcc_temp_yield"}
    for key, entry in REGISTRY.items():
        path = data_dir / key
        assert path.stat().st_size == entry.size, key
        assert sha256_of(path) == entry.sha256, key
        assert entry.url.startswith("https://raw.githubusercontent.com/"), key
        commit = entry.url.split("/")[5]
        assert len(commit) == 40 and int(commit, 16) >= 0, key  # pinned to a commit


def test_fetch_returns_the_verified_cached_file(data_dir, monkeypatch):
    def no_network(*a, **kw):
        raise AssertionError("fetch must not download a file that is cached")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    assert fetch("influenza_usa/colagnn_state_adj_49.txt") == data_dir / "influenza_usa/colagnn_state_adj_49.txt"


def test_unknown_key_names_the_registered_ones():
    with pytest.raises(UnknownDataFileError, match="unknown data file 'nope.csv'.*influenza_usa/"):
        fetch("nope.csv")


def test_cached_file_with_wrong_checksum_is_reported(cache):
    key = "demo/table.csv"
    (cache / "demo").mkdir(parents=True)
    (cache / key).write_bytes(b"tampered")
    with pytest.raises(DataChecksumError) as err:
        fetch(key, registry={key: _entry("http://127.0.0.1:9/none")})
    assert str(cache / key) in str(err.value) and "Delete it" in str(err.value)


def test_download_over_http_is_verified_cached_and_atomic(cache, server):
    www, base, hits = server
    (www / "table.csv").write_bytes(PAYLOAD)
    key = "demo/table.csv"
    reg = {key: _entry(f"{base}/table.csv")}
    path = fetch(key, registry=reg)
    assert path == cache / key and path.read_bytes() == PAYLOAD
    assert hits == ["/table.csv"]
    assert [p.name for p in (cache / "demo").iterdir()] == ["table.csv"]  # no .part left
    fetch(key, registry=reg)
    assert hits == ["/table.csv"]  # second call served from the cache


def test_download_with_wrong_checksum_is_not_saved(cache, server):
    www, base, _ = server
    (www / "table.csv").write_bytes(PAYLOAD + b"extra")
    key = "demo/table.csv"
    (cache / "demo").mkdir(parents=True)  # an existing folder is kept
    with pytest.raises(DataChecksumError, match=f"{base}/table.csv"):
        fetch(key, registry={key: _entry(f"{base}/table.csv")})
    assert list((cache / "demo").iterdir()) == []


def test_http_error_names_url_and_env_var(cache, server):
    _, base, _ = server
    key = "demo/missing.csv"
    with pytest.raises(DataDownloadError) as err:
        fetch(key, registry={key: _entry(f"{base}/missing.csv")})
    msg = str(err.value)
    assert f"{base}/missing.csv" in msg and "NIMM_DATA_DIR" in msg and "404" in msg


def test_network_failure_gives_one_clear_error(cache):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    key = "demo/table.csv"
    url = "https://example.invalid/table.csv"
    with pytest.raises(DataDownloadError) as err:
        fetch(key, registry={key: _entry(url)}, opener=offline)
    msg = str(err.value)
    assert url in msg and "NIMM_DATA_DIR" in msg and "demo/table.csv" in msg
    assert not cache.exists()  # no empty cache folders left behind


def test_file_url_download(cache, tmp_path):
    src = tmp_path / "src.csv"
    src.write_bytes(PAYLOAD)
    key = "demo/from_file.csv"
    path = fetch(key, registry={key: _entry(src.as_uri())})
    assert path.read_bytes() == PAYLOAD


def test_unwritable_cache_is_reported(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    monkeypatch.setenv("NIMM_DATA_DIR", str(blocker))
    key = "demo/table.csv"
    with pytest.raises(DataDownloadError, match="cannot write to the data cache"):
        fetch(key, registry={key: _entry("http://127.0.0.1:9/none")})
