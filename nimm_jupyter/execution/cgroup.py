"""Per-job memory cgroups on Linux: one kernel limit on everything a job's processes use.

``RLIMIT_AS`` caps each process's address space and the driver's watchdog samples resident
memory twice a second, but neither counts the pages of a job's tmpfs mounts, and many
processes can each stay just under the address-space limit. A memory cgroup counts all of it
(anonymous memory, page cache, the job's tmpfs work dir and ``/dev/shm``) for every process of
the job together, and the kernel's OOM killer ends the job the moment it goes over.

Where this process may create memory cgroups (the cgroup v1 memory controller, or a cgroup v2
subtree whose memory controller it may enable), the executor makes a group of its own,
``nimm-<driver pid>-<n>``, and one group per job below it, limited to the job's
``memory_mb``; the forked job child moves itself in before it enters the jail (the jail hides
``/sys``). The driver reads the group's OOM-kill count to classify an unreported end as
``out_of_memory``, and removes the group when the job is gone. Where the kernel offers no
such cgroup, :func:`open_groups` says why and the other limits stay in force.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass

__all__ = ["MemoryGroups", "open_groups", "join"]

_PREFIX = "nimm-"
_counter = itertools.count()


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of each cgroup mount."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype, _src, opts = (right.split() + ["", "", ""])[:3]
                if fstype in ("cgroup", "cgroup2"):
                    out.append((left.split()[4], fstype, opts))
    except OSError:
        pass
    return out


def _own_path(v2: bool) -> str:
    """This process's cgroup path in the memory hierarchy (v1) or the unified one (v2)."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _id, controllers, path = line.rstrip("\n").split(":", 2)
                if (v2 and _id == "0" and controllers == "") or (
                        not v2 and "memory" in controllers.split(",")):
                    return path
    except (OSError, ValueError):
        pass
    return "/"


def _base_dirs() -> list[tuple[str, bool]]:
    """Candidate directories to create the executor's group in: (dir, is v2), v1 first."""
    out = []
    for point, fstype, opts in _mounts():
        v2 = fstype == "cgroup2"
        if not v2 and "memory" not in opts.split(","):
            continue
        own = os.path.join(point, _own_path(v2).lstrip("/"))
        out.append((own if os.path.isdir(own) else point, v2))
    out.sort(key=lambda d: d[1])
    return out


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _remove_tree(path: str) -> None:
    """rmdir ``path``'s child groups, then ``path`` (groups are removed with rmdir, never
    with their files; a group with a live process stays)."""
    try:
        children = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for child in children:
        _remove_tree(child)
    try:
        os.rmdir(path)
    except OSError:
        pass


@dataclass
class MemoryGroups:
    """The executor's memory cgroup and its per-job groups."""

    root: str
    v2: bool

    def job_group(self, name: str, limit_mb: int) -> str:
        """Create the group of one job, limited to ``limit_mb`` MiB (swap included where the
        kernel accounts it); returns its path for :func:`join`."""
        path = os.path.join(self.root, name)
        os.mkdir(path)
        limit = str(int(limit_mb) << 20)
        try:
            if self.v2:
                _write(os.path.join(path, "memory.max"), limit)
                swap = os.path.join(path, "memory.swap.max")
                if os.path.exists(swap):
                    _write(swap, "0")
            else:
                _write(os.path.join(path, "memory.limit_in_bytes"), limit)
                memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):
                    _write(memsw, limit)
        except OSError:
            self.remove(path)
            raise
        return path

    def oom_kills(self, path: str) -> int:
        """How many processes of the group the kernel killed for its limit."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            with open(os.path.join(path, name)) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self, path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass  # still has a process (it is being killed); close() tries again

    def close(self, wait: float = 2.0) -> None:
        """Remove the executor's groups; a job killed just now may take a moment to leave
        its group, so this retries for up to ``wait`` seconds (the next executor's sweep
        removes whatever is still left)."""
        deadline = time.monotonic() + wait
        _remove_tree(self.root)
        while os.path.exists(self.root) and time.monotonic() < deadline:
            time.sleep(0.05)
            _remove_tree(self.root)


def sweep_stale(base: str) -> None:
    """Remove executor groups under ``base`` whose driver process is dead."""
    try:
        names = [e.name for e in os.scandir(base) if e.name.startswith(_PREFIX) and e.is_dir()]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not _alive(pid):
            _remove_tree(os.path.join(base, name))


def open_groups() -> tuple[MemoryGroups | None, str | None]:
    """The executor's memory cgroup, or ``(None, why not)``."""
    bases = _base_dirs()
    if not bases:
        return None, "no cgroup memory controller is mounted"
    problems = []
    for base, v2 in bases:
        sweep_stale(base)
        root = os.path.join(base, f"{_PREFIX}{os.getpid()}-{next(_counter)}")
        try:
            os.mkdir(root)
            if v2:  # let the job groups below it have memory limits
                _write(os.path.join(root, "cgroup.subtree_control"), "+memory")
            groups = MemoryGroups(root, v2)
            probe = groups.job_group("probe", 64)
            groups.remove(probe)
            return groups, None
        except OSError as exc:
            _remove_tree(root)
            problems.append(f"{base}: {exc.strerror or exc}")
    return None, "cannot create a memory cgroup (" + "; ".join(problems) + ")"


def join(path: str) -> None:
    """Move the calling process into the group at ``path`` (a job child, before its jail)."""
    _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
