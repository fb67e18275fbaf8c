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
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import multiprocess

from service.settings import MULTIPROC_DIR_ENV

log = logging.getLogger("plaudit.workers")

WORKER_FILE_PREFIX = "plaudit_worker_"
# A shared directory that `plaudit serve` makes: plaudit-workers-PID-RANDOM, in the temp dir.
SHARED_DIRECTORY_PREFIX = "plaudit-workers-"
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

    A new one's name carries this process's pid, so that the next server can remove it if this
    one is killed before it could (SIGKILL, a crash): see remove_abandoned_directories."""
    made = None
    if not env.get(MULTIPROC_DIR_ENV):
        remove_abandoned_directories(Path(tempfile.gettempdir()))
        made = Path(tempfile.mkdtemp(prefix=f"{SHARED_DIRECTORY_PREFIX}{os.getpid()}-"))
        env[MULTIPROC_DIR_ENV] = str(made)
    prepare_shared_directory(Path(env[MULTIPROC_DIR_ENV]))
    return made


def remove_abandoned_directories(parent: Path) -> list[Path]:
    """Remove the temporary shared directories in `parent` whose server has gone without
    removing its own: made by this user, named with a pid that no longer runs. Returns them.

    A directory named without a pid, or another user's, is left alone: nothing says it is not
    in use. A pid reused since by another process keeps its directory until that one exits."""
    removed = []
    for path in parent.glob(f"{SHARED_DIRECTORY_PREFIX}*"):
        owner, _, _ = path.name.removeprefix(SHARED_DIRECTORY_PREFIX).partition("-")
        try:
            if not owner.isdigit() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
        except OSError:  # gone meanwhile
            continue
        if not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
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
