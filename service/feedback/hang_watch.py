"""Cut a PostgreSQL connection whose server has stopped answering, so the call waiting on it fails.

A server process that hangs (stopped, or stuck on a stalled disk) while its host's TCP stack
still answers is invisible to every network timeout: the query was acknowledged, keepalive
probes are answered, and libpq waits for the reply for ever, holding a service thread and the
client's request.
A server-side cancel cannot reach a process that does not run either. So each connection Plaudit
checks out of its pool is watched: held past its limit, its socket is shut down from here, the
call blocked on it wakes to "server closed the connection", and the caller gets a database
error (503 over HTTP) instead of an answer that never comes. Nothing half-written is kept: the
server rolls back a transaction whose connection is gone.

One thread per watch wakes only at the earliest deadline, and only while a connection is held.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("plaudit.feedback")


@dataclass(frozen=True)
class _Held:
    deadline: float  # time.monotonic() past which the connection is cut
    limit_s: float
    fd: int
    connection: Any


class HangWatch:
    """Deadlines for the psycopg connections in use; `hold` when one is checked out, `release`
    when it is returned (or closed). One held past its deadline has its socket shut down."""

    def __init__(self, limit_s: float, describe: str = "the feedback database") -> None:
        if limit_s <= 0:
            raise ValueError(f"a hang limit must be positive, got {limit_s}")
        self.limit_s = limit_s
        self.describe = describe
        self.cut = 0  # connections cut so far
        self._changed = threading.Condition()
        self._held: dict[int, _Held] = {}  # by id(connection)
        self._watcher: threading.Thread | None = None

    def hold(self, connection: Any, limit_s: float | None = None) -> None:
        """Start (or restart) `connection`'s clock: it is cut if still held `limit_s` (default:
        the watch's limit) from now."""
        fd = _socket_of(connection)
        if fd is None:
            return  # already lost: nothing would wait on it
        with self._changed:
            limit_s = self.limit_s if limit_s is None else limit_s
            self._held[id(connection)] = _Held(time.monotonic() + limit_s, limit_s, fd, connection)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="plaudit-db-hang-watch", daemon=True)
                self._watcher.start()
            self._changed.notify()

    def release(self, connection: Any) -> None:
        """Stop watching `connection` (returned to the pool, closed, or let run without a limit)."""
        with self._changed:
            self._held.pop(id(connection), None)

    def held(self) -> int:
        with self._changed:
            return len(self._held)

    def _watch(self) -> None:
        with self._changed:
            while self._held:
                now = time.monotonic()
                for key, held in list(self._held.items()):
                    if held.deadline <= now:
                        # Cut under the lock: the holder cannot release, so cannot close the
                        # connection and free its descriptor for reuse, until this is done.
                        del self._held[key]
                        self._cut(held)
                if self._held:
                    next_deadline = min(held.deadline for held in self._held.values())
                    self._changed.wait(max(0.0, next_deadline - time.monotonic()))
            self._watcher = None

    def _cut(self, held: _Held) -> None:
        if _socket_of(held.connection) != held.fd:
            return  # libpq has dropped this connection itself since: the descriptor may be another's now
        try:
            # A duplicate descriptor of the same socket: shutting it down wakes the thread that
            # waits on the original, and closing it leaves the original to its owner.
            with socket.socket(fileno=os.dup(held.fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)
        except OSError as exc:
            log.warning("could not cut a hung connection to %s: %s", self.describe, exc)
            return
        self.cut += 1
        log.warning(
            "%s did not answer within %g s: connection cut, so the call waiting on it fails "
            "(a liveness ping is retried on a new connection)",
            self.describe, held.limit_s,
        )


def _socket_of(connection: Any) -> int | None:
    """The socket descriptor under a psycopg connection, or None once it is closed or lost."""
    try:
        if connection.closed:
            return None
        return int(connection.pgconn.socket)
    except Exception:  # psycopg raises OperationalError once libpq has dropped the socket
        return None

