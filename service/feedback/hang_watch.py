"""Cut a PostgreSQL connection whose server has stopped answering, so the call waiting on it fails.

A server process that hangs (stopped, or stuck on a stalled disk) while its host's TCP stack
still answers is invisible to every network timeout: the query was acknowledged, keepalive
probes are answered, and libpq waits for the reply for ever, holding a service thread and the
client's request.
A server-side cancel cannot reach a process that does not run either. So each connection Plaudit
checks out of its pool is watched: held past its limit, its socket is shut down from here, the
call blocked on it wakes to "server closed the connection", and the caller gets a database
error (503 over HTTP) instead of an answer that never comes. Nothing half-written is kept: the
server rolls back a transaction whose connection is gone, unless the cut came while its COMMIT
was under way, when whether it committed is unknown (as with any connection lost then): a retry
with the same feedback_id is answered as a replay if it did, and stored once if it did not.

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
    fd: int  # libpq's descriptor when the hold began
    own_fd: int  # our duplicate of it: the same socket, whatever becomes of libpq's number
    connection: Any


class HangWatch:
    """Deadlines for the psycopg connections in use; `hold` when one is checked out, `release`
    when it is returned (or closed). One held past its deadline has its socket shut down.

    Each hold keeps a duplicate descriptor of the connection's socket and cuts through that:
    libpq closes its own descriptor when the server drops the connection, and the number may
    be another socket's (a client's, another connection's) a moment later, which must never be
    shut down. The duplicate always names the socket the hold began on."""

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
            before = self._held.pop(id(connection), None)
            if before is not None and before.fd == fd:
                own_fd = before.own_fd  # a new limit on the same socket: keep its duplicate
            else:
                if before is not None:
                    os.close(before.own_fd)
                try:
                    own_fd = os.dup(fd)
                except OSError as exc:  # out of descriptors: serve unwatched rather than fail
                    log.warning("cannot watch a connection to %s for hangs: %s", self.describe, exc)
                    return
            self._held[id(connection)] = _Held(time.monotonic() + limit_s, limit_s, fd, own_fd, connection)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="plaudit-db-hang-watch", daemon=True)
                self._watcher.start()
            self._changed.notify()

    def release(self, connection: Any) -> None:
        """Stop watching `connection` (returned to the pool, closed, or let run without a limit)."""
        with self._changed:
            held = self._held.pop(id(connection), None)
        if held is not None:
            os.close(held.own_fd)

    def held(self) -> int:
        with self._changed:
            return len(self._held)

    def _watch(self) -> None:
        with self._changed:
            while self._held:
                now = time.monotonic()
                for key, held in list(self._held.items()):
                    if held.deadline <= now:
                        del self._held[key]
                        self._cut(held)
                if self._held:
                    next_deadline = min(held.deadline for held in self._held.values())
                    self._changed.wait(max(0.0, next_deadline - time.monotonic()))
            self._watcher = None

    def _cut(self, held: _Held) -> None:
        try:
            # Shutting our duplicate down shuts the socket down, which wakes the thread waiting on
            # libpq's descriptor; closing the duplicate then leaves libpq's to its owner.
            with socket.socket(fileno=held.own_fd) as duplicate:
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

