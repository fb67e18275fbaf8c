"""The worker processes of one server (`plaudit serve --workers N`) and the directory they share.

Each worker is a whole server: its own model, batcher and engine, started by the supervisor
(service.supervisor) or by uvicorn's own workers, all on one port; a connection goes to one of
them. A probe therefore reaches one worker at random, so the workers publish what a probe needs in
one shared directory, the one prometheus_client's multiprocess mode writes metrics to
(PROMETHEUS_MULTIPROC_DIR):

- every worker's metrics, which /metrics adds up (service.metrics);
- one small JSON file per worker saying whether it is ready and what it serves, which /readyz
  reads, so that the server is ready only once every worker is.

A worker that dies is forgotten by the next reader: its file is removed and prometheus_client
is told (`mark_process_dead`), so its live gauges stop counting. The supervisor starts a new
worker in its place, which publishes its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prometheus_client import multiprocess

from service.settings import MULTIPROC_DIR_ENV

log = logging.getLogger("plaudit.workers")

WORKER_FILE_PREFIX = "plaudit_worker_"
# A shared directory that `plaudit serve` makes: plaudit-workers-PID-RANDOM, in the temp dir.
SHARED_DIRECTORY_PREFIX = "plaudit-workers-"
OWNER_LOCK_FILE = "owner.lock"  # locked by the server that made the directory, while it runs
_HELD_OWNER_LOCKS: list[IO[bytes]] = []  # the locks this process holds, kept open
# How often a worker compares what it serves with what it last published.
PUBLISH_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    pid: int
    ready: bool
    model: str | None  # NAME:VERSION while one is loaded


def prepare_shared_directory(directory: Path) -> None:
    """Make `directory` ready for a new server: created, and emptied of an earlier run's metrics
    and worker files (prometheus_client would add an old run's counts to the new one's)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in (*directory.glob("*.db"), *directory.glob(f"{WORKER_FILE_PREFIX}*.json")):
        path.unlink(missing_ok=True)


def provide_shared_directory(env: MutableMapping[str, str]) -> Path | None:
    """Make sure `env` (the environment the workers will inherit) names a prepared shared
    directory: the one it names already, or a new temporary one, which is returned so that
    whoever made it can remove it when the server has stopped.

    This process holds a lock on a new one for as long as it runs, so that the next server can
    remove it if this one is killed before it could (SIGKILL, a crash): see
    remove_abandoned_directories. Its name carries the pid, for people reading /tmp."""
    made = None
    if not env.get(MULTIPROC_DIR_ENV):
        remove_abandoned_directories(Path(tempfile.gettempdir()))
        made = Path(tempfile.mkdtemp(prefix=f"{SHARED_DIRECTORY_PREFIX}{os.getpid()}-"))
        _HELD_OWNER_LOCKS.append(_lock_as_owner(made))
        env[MULTIPROC_DIR_ENV] = str(made)
    prepare_shared_directory(Path(env[MULTIPROC_DIR_ENV]))
    return made


def _lock_as_owner(directory: Path) -> IO[bytes]:
    """Lock `directory`'s owner file for this process's lifetime (the kernel lets go when it
    exits, however it exits). The file is locked under another name and then renamed, so no
    one can find it unlocked. The returned file must stay open; it is not inherited by the
    worker processes (Python opens files non-inheritable)."""
    staging = directory / f".{OWNER_LOCK_FILE}"
    held = open(staging, "wb")  # noqa: SIM115 - open until the process ends
    fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    staging.rename(directory / OWNER_LOCK_FILE)
    return held


def remove_abandoned_directories(parent: Path) -> list[Path]:
    """Remove the temporary shared directories in `parent` whose server has gone without
    removing its own: made by this user, with an owner lock that nobody holds. Returns them.

    A lock works across containers sharing a /tmp, where pids do not. A directory without an
    owner file (made before there was one, or being made), another user's, or a link, is left
    alone: nothing says it is not in use."""
    removed = []
    for path in parent.glob(f"{SHARED_DIRECTORY_PREFIX}*"):
        try:
            info = path.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            owner = open(path / OWNER_LOCK_FILE, "rb")  # noqa: SIM115 - closed below
        except OSError:  # gone meanwhile, or no owner file
            continue
        with owner:
            try:
                fcntl.flock(owner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its server is running
                continue
            shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        log.info("removed %d shared worker directories left by servers that were killed", len(removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkerGroup:
    """This worker's view of the group: publish its own status, read everyone's."""

    def __init__(self, directory: Path, expected: int, pid: int | None = None) -> None:
        self.directory = directory
        self.expected = expected
        self.pid = pid if pid is not None else os.getpid()
        self._published: WorkerStatus | None = None

    def _file(self, pid: int) -> Path:
        return self.directory / f"{WORKER_FILE_PREFIX}{pid}.json"

    def publish(self, ready: bool, model: str | None) -> None:
        """Write this worker's status (atomically: readers never see half a file)."""
        status = WorkerStatus(pid=self.pid, ready=ready, model=model)
        if status == self._published:
            return
        target = self._file(self.pid)
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps({"pid": self.pid, "ready": ready, "model": model}))
        partial.replace(target)
        self._published = status

    def statuses(self) -> list[WorkerStatus]:
        """The status of every live worker; dead workers' files are removed on the way."""
        found = []
        for path in sorted(self.directory.glob(f"{WORKER_FILE_PREFIX}*.json")):
            try:
                raw = json.loads(path.read_text())
                status = WorkerStatus(pid=int(raw["pid"]), ready=bool(raw["ready"]), model=raw.get("model"))
            except FileNotFoundError:
                continue  # forgotten by another reader meanwhile
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable worker status %s: %s", path, exc)
                continue
            if status.pid != self.pid and not _alive(status.pid):
                self.forget(status.pid)
                continue
            found.append(status)
        return found

    def ready_count(self, self_ready: bool) -> int:
        """Workers ready now; this one's own readiness is `self_ready` (its file may lag)."""
        others = sum(1 for status in self.statuses() if status.ready and status.pid != self.pid)
        return others + int(self_ready)

    def forget(self, pid: int) -> None:
        """Drop a worker that has gone: its status file and its live gauges."""
        self._file(pid).unlink(missing_ok=True)
        # Every worker sweeps: two that find the same dead pid at once race to remove its
        # gauge files, and prometheus_client removes them without a missing-file check.
        with contextlib.suppress(FileNotFoundError):
            multiprocess.mark_process_dead(pid, str(self.directory))
        log.info("worker %d has gone; its status and live gauges were dropped", pid)

    def withdraw(self) -> None:
        """This worker stops (shutdown): it no longer counts towards readiness or live gauges."""
        self._file(self.pid).unlink(missing_ok=True)
        multiprocess.mark_process_dead(self.pid, str(self.directory))
        self._published = None

    async def keep_published(self, status: Callable[[], tuple[bool, str | None]]) -> None:
        """Publish `status()` whenever it changes, until cancelled; then withdraw."""
        try:
            while True:
                ready, model = status()
                try:
                    self.publish(ready, model)
                except OSError as exc:  # a full disk must not stop the worker serving
                    log.warning("could not publish this worker's status: %s", exc)
                await asyncio.sleep(PUBLISH_INTERVAL_S)
        finally:
            with contextlib.suppress(OSError):
                self.withdraw()
