"""Download, verify and cache the raw data files of the real-data benchmark tasks.

Each file is fetched once from its public origin (a raw GitHub URL at a pinned commit),
checked against a hard-coded SHA-256 and kept in a cache folder: ``$NIMM_DATA_DIR`` if set,
else ``$XDG_CACHE_HOME/nimm-jupyter/data`` (``~/.cache/nimm-jupyter/data``). Without
internet, point ``NIMM_DATA_DIR`` at a folder that already holds the files in the same
layout (``influenza_usa/colagnn_state360.txt``, ...). Derived tables (subsets, wide
formats) are never downloaded: the task modules compute them from these raw files.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = [
    "RemoteFile", "REGISTRY", "DataError", "DataChecksumError", "DataDownloadError",
    "UnknownDataFileError",
    "data_dir", "fetch", "sha256_of",
]

ENV_VAR = "NIMM_DATA_DIR"
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    """One raw file: where it comes from and what its bytes must hash to."""

    url: str
    sha256: str
    size: int  # bytes
    citation: str = ""


_COLAGNN = "https://raw.githubusercontent.com/amy-deng/colagnn/7da87d6dad05d38f914aae9224b4814743d5584e"
_EPIGNN = "https://raw.githubusercontent.com/Xiefeng69/EpiGNN/1c0bb8c2e162126c30eeb76218ee264cbad0e217"
_STTSL = "https://raw.githubusercontent.com/JoooZhou/ST-TSL/05c7654887e357ae2d10acf3b1c1359814ab425d"
_MPEA = ("https://raw.githubusercontent.com/CitrineInformatics/MPEA_dataset/"
         "d31e2510cccc3fb9e79d43ad62652f64ef8c2c5e/MPEA_dataset.csv")
_MPEA_SHA = "c5504d93fd324d1be26cf814d0694ee9ee95578d68a0b38aba6813b939fa2c5d"
_MPEA_CITE = "Borg et al., Sci. Data 7, 430 (2020), doi:10.1038/s41597-020-00768-9 (Apache-2.0)"

REGISTRY: dict[str, RemoteFile] = {
    "influenza_usa/colagnn_state360.txt": RemoteFile(
        f"{_COLAGNN}/data/state360.txt",
        "364c1047dba84bc62b9011360332b679bc9cbcba1dbff1b9db210166f4289bf1", 93_588,
        "Deng et al., Cola-GNN, CIKM 2020; CDC FluView ILINet"),
    "influenza_usa/colagnn_state_adj_49.txt": RemoteFile(
        f"{_COLAGNN}/data/state-adj.txt",
        "e8b147e43035bbf59deb9114af87b8bc6b098d031d3aeb9ed38338d19eeb087c", 4_802,
        "Deng et al., Cola-GNN, CIKM 2020"),
    "influenza_usa/epignn_state_adj_50.txt": RemoteFile(
        f"{_EPIGNN}/data/state-adj-50.txt",
        "4808d603f7518185221d02922943239acf08f085406ba039097e8a0797425446", 5_000,
        "Xie et al., EpiGNN, ECML-PKDD 2022"),
    "influenza_usa/ilinet_states_2016w40_2024w44.csv": RemoteFile(
        f"{_STTSL}/ILINet.csv",
        "64f10b3bf72abced11ea0e3919d768990949508e0cf70d5b35f23ae5480acf0a", 1_373_429,
        "CDC FluView Interactive / ILINet (US public domain), redistributed by JoooZhou/ST-TSL"),
    "hea_fcc_rt_yield/MPEA_dataset_Borg2020.csv": RemoteFile(_MPEA, _MPEA_SHA, 332_126, _MPEA_CITE),
    "hea_bcc_temp_yield/MPEA_dataset_Borg2020.csv": RemoteFile(_MPEA, _MPEA_SHA, 332_126, _MPEA_CITE),
}


class DataError(RuntimeError):
    """A raw data file could not be provided."""


class DataChecksumError(DataError):
    """A file's bytes do not hash to the registered SHA-256."""


class DataDownloadError(DataError):
    """A download failed (network, HTTP error, unwritable cache)."""


class UnknownDataFileError(DataError, KeyError):
    """``fetch`` was asked for a key that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def data_dir() -> Path:
    """The cache folder: ``$NIMM_DATA_DIR``, else the user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "nimm-jupyter" / "data"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# path -> (size, mtime_ns) of files already verified in this process: hashing a few MB on
# every task build is cheap but needless.
_VERIFIED: dict[str, tuple[int, int]] = {}


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _verify_cached(key: str, path: Path, entry: RemoteFile) -> None:
    if _VERIFIED.get(str(path)) == _stamp(path):
        return
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise DataChecksumError(
            f"cached data file {path} (for {key!r}) has SHA-256 {actual}, expected "
            f"{entry.sha256}; it is corrupt or a different version. Delete it to download "
            f"it again from {entry.url}"
        )
    _VERIFIED[str(path)] = _stamp(path)


def _download(key: str, entry: RemoteFile, target: Path,
              opener: Callable[..., object]) -> None:
    hint = (f"Without internet, set {ENV_VAR} to a folder that holds {key} "
            f"(same layout as the project's data folder).")
    # Folders this call creates are removed again if the download fails, so a failed
    # offline attempt leaves no empty cache tree behind.
    created: list[Path] = []
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                        dir=target.parent)
    except OSError as e:
        raise DataDownloadError(f"cannot write to the data cache {target.parent}: {e}. {hint}") from e
    tmp = Path(tmp_name)
    saved = False
    try:
        h = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, opener(entry.url, timeout=_TIMEOUT_S) as resp:
                while chunk := resp.read(1 << 16):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            if isinstance(e, urllib.error.HTTPError):
                reason = f"HTTP {e.code} {e.reason}"
            else:
                reason = getattr(e, "reason", None) or e
            raise DataDownloadError(f"download of {key!r} from {entry.url} failed: {reason}. {hint}") from e
        if h.hexdigest() != entry.sha256:
            raise DataChecksumError(
                f"file downloaded from {entry.url} for {key!r} has SHA-256 {h.hexdigest()}, "
                f"expected {entry.sha256}; it was not saved. {hint}"
            )
        os.replace(tmp, target)  # atomic: readers never see a half-written file
        saved = True
    finally:
        if tmp.exists():
            tmp.unlink()
        if not saved:
            for d in created:  # deepest first
                try:
                    d.rmdir()
                except OSError:
                    break


def fetch(key: str, *, registry: dict[str, RemoteFile] | None = None,
          opener: Callable[..., object] | None = None) -> Path:
    """Local path of the raw file ``key``, downloading and verifying it when missing.

    ``registry`` and ``opener`` (``urllib.request.urlopen``-like) exist for tests and for
    mirrors; by default the module's :data:`REGISTRY` and ``urlopen`` are used.
    """
    reg = REGISTRY if registry is None else registry
    if key not in reg:
        raise UnknownDataFileError(f"unknown data file {key!r}; registered: {', '.join(sorted(reg))}")
    entry = reg[key]
    target = data_dir() / key
    if target.is_file():
        _verify_cached(key, target, entry)
        return target
    _download(key, entry, target, opener or urllib.request.urlopen)
    _VERIFIED[str(target)] = _stamp(target)
    return target

