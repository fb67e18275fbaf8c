"""Run several server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own workers share one listening socket, and an event loop that wakes for it accepts
every connection waiting there (asyncio and uvloop accept until the queue is empty). So a burst
of new connections, a load generator or a client's pool opening, lands mostly on whichever
worker woke first: 64 connections from `plaudit loadtest` split 21/4/28/11 over four uvicorn
workers on the 2-core machine. A worker with a few connections then idles while another queues.

Here each worker binds its own socket to the port with SO_REUSEPORT, and Linux spreads new
connections over the sockets by a hash of their addresses, so each worker gets its share of
any burst. The supervisor reserves the port first (refusing one that is taken, rather than
joining another server's group), starts the workers as fresh processes, starts a new one in
place of any that dies, and on SIGINT or SIGTERM stops them all (each drains as uvicorn does).
Elsewhere than Linux SO_REUSEPORT does not balance, and `plaudit serve` uses uvicorn's workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger("plaudit.supervisor")

APP_FACTORY = "service.app:create_app"
CHECK_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 60.0  # a worker drains its requests (request_timeout_s) before it exits


def balances_connections() -> bool:
    """Whether this platform spreads connections over SO_REUSEPORT sockets (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve_port(host: str, port: int) -> socket.socket:
    """Check that `host:port` is free (port 0: pick one) and hold it for the workers: a bound,
    not listening, SO_REUSEPORT socket, which takes no connections itself.

    The check binds with SO_REUSEADDR, as uvicorn does for one worker, so that connections a
    stopped server left in TIME_WAIT do not refuse a restart for a minute; a server listening
    on the port still refuses it. The reservation itself goes without SO_REUSEADDR where it
    can: Linux lets a SO_REUSEADDR bind share a port only with sockets that set it too and do
    not listen, so a second `plaudit serve` is then refused even before the first one's
    workers listen. Over TIME_WAIT left by a server without SO_REUSEPORT (one uvicorn) it
    needs SO_REUSEADDR as well.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))  # OSError (address in use) if another server has it
        port = probe.getsockname()[1]
    try:
        return _reuse_port_socket(host, port, reuse_address=False)
    except OSError:  # only TIME_WAIT is left here: the probe found no server
        return _reuse_port_socket(host, port)


def _reuse_port_socket(host: str, port: int, reuse_address: bool = True) -> socket.socket:
    """Bound to `host:port` with SO_REUSEPORT; not listening (a worker's server listens on it)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        if reuse_address:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def run_worker(host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
    """One worker: its own socket on the shared port, then uvicorn serving the app factory."""
    import uvicorn

    sock = _reuse_port_socket(host, port)  # uvicorn's server starts listening on it
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port, **uvicorn_options)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Keeps `workers` worker processes serving on `host:port` until told to stop."""

    def __init__(self, workers: int, host: str, port: int, uvicorn_options: dict[str, Any]) -> None:
        self.workers = workers
        self.host = host
        self.uvicorn_options = uvicorn_options
        self._reservation = reserve_port(host, port)
        self.port = int(self._reservation.getsockname()[1])
        self._context = multiprocessing.get_context("spawn")  # no forked threads or CUDA state
        self._processes: list[BaseProcess] = []
        self._stopping = threading.Event()

    def _start_one(self) -> BaseProcess:
        process = self._context.Process(
            target=run_worker, args=(self.host, self.port, self.uvicorn_options), name="plaudit-worker"
        )
        process.start()
        return process

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        log.info("starting %d workers on http://%s:%d", self.workers, self.host, self.port)
        self._processes = [self._start_one() for _ in range(self.workers)]
        try:
            while not self._stopping.wait(CHECK_INTERVAL_S):
                for i, process in enumerate(self._processes):
                    if not process.is_alive():
                        log.warning("worker %s exited with code %s; starting another", process.pid, process.exitcode)
                        self._processes[i] = self._start_one()
        finally:
            self._stop_all()
            self._reservation.close()

    def _stop_all(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn stops accepting and drains
        give_up = time.monotonic() + STOP_TIMEOUT_S
        for process in self._processes:
            process.join(max(0.0, give_up - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in %.0f s; killing it", process.pid, STOP_TIMEOUT_S)
                process.kill()
                process.join()
        log.info("all workers stopped")
