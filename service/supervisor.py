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
place of any that dies (after a growing pause if they keep dying at start), and on SIGINT or
SIGTERM stops them all (each drains as uvicorn does). A worker whose supervisor has died (killed
with SIGKILL, say) stops itself the same way, so no orphan keeps the port.
Elsewhere than Linux SO_REUSEPORT does not balance, and `plaudit serve` uses uvicorn's workers.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
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
PARENT_POLL_S = 1.0  # how often a worker without prctl looks for its supervisor
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
STOP_MARGIN_S = 30.0  # past the request deadline, for a worker to drain and close its model
# A worker that dies within EARLY_DEATH_S of its start is failing to start (a bad install, a
# device out of memory): each such death in a row doubles the wait before the next try, from
# FIRST_RESTART_DELAY_S up to MAX_RESTART_DELAY_S, instead of respawning twice a second.
EARLY_DEATH_S = 30.0
FIRST_RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0


def restart_delay(early_deaths: int) -> float:
    """Seconds to wait before replacing a worker, after `early_deaths` early deaths in a row."""
    if early_deaths <= 0:
        return 0.0
    return min(FIRST_RESTART_DELAY_S * 2 ** (early_deaths - 1), MAX_RESTART_DELAY_S)


def balances_connections() -> bool:
    """Whether this platform spreads connections over SO_REUSEPORT sockets (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def probe_port(host: str, port: int) -> int:
    """The port a server could listen on at `host:port` (port 0: one picked now); OSError
    (address in use, or not this machine's) if none could. Binds with SO_REUSEADDR, as
    uvicorn does, so connections left in TIME_WAIT do not count as a server."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))  # OSError (address in use) if another server has it
        return int(probe.getsockname()[1])


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
    port = probe_port(host, port)
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


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(supervisor_pid: int) -> None:
    """Send SIGTERM to this process once its parent is no longer `supervisor_pid`."""
    while os.getppid() == supervisor_pid:
        time.sleep(PARENT_POLL_S)
    log.warning("the supervisor (pid %d) has gone; this worker stops", supervisor_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def stop_with_supervisor(supervisor_pid: int) -> bool:
    """Make this worker stop, as on SIGTERM (draining what it accepted), when its supervisor
    dies, even by SIGKILL, which gives the supervisor no chance to stop it: an orphan would
    keep serving and keep the port from a new server. False if the supervisor is gone already.

    On Linux the kernel sends the signal (PR_SET_PDEATHSIG), at once and with no thread. It
    fires when the parent *thread* that started this process exits, not the parent process;
    that is the same here, as the supervisor starts every worker from its main thread (run,
    which installs signal handlers, can run only there). Elsewhere a daemon thread compares
    getppid() with the supervisor's pid once a second; the comparison, not "is it 1?", also
    notices a re-parenting to a subreaper. Either way, a supervisor that died before this
    ran is caught by the getppid() check below."""
    if not _set_parent_death_signal(signal.SIGTERM):
        threading.Thread(target=_watch_parent, args=(supervisor_pid,), name="plaudit-parent-watch", daemon=True).start()
    return os.getppid() == supervisor_pid


def run_worker(
    host: str, port: int, uvicorn_options: dict[str, Any], supervisor_pid: int | None = None, replacement: bool = False
) -> None:
    """One worker: its own socket on the shared port, then uvicorn serving the app factory.
    With `supervisor_pid`, the worker stops itself when that process (its parent) dies. A
    `replacement` (for a worker that died) listens only once its model is served (service.app)."""
    if supervisor_pid is not None and not stop_with_supervisor(supervisor_pid):
        log.warning("the supervisor (pid %d) has gone; this worker does not start", supervisor_pid)
        return
    if replacement:
        from service.settings import REPLACEMENT_WORKER_ENV

        os.environ[REPLACEMENT_WORKER_ENV] = "1"
    import uvicorn

    sock = _reuse_port_socket(host, port)  # uvicorn's server starts listening on it
    config = uvicorn.Config(APP_FACTORY, factory=True, host=host, port=port, **uvicorn_options)
    uvicorn.Server(config).run(sockets=[sock])


class _Slot:
    """One worker's place: its current process, and how its recent starts went."""

    def __init__(self) -> None:
        self.process: BaseProcess | None = None
        self.started_at = 0.0
        self.early_deaths = 0  # in a row
        self.started_before = False  # a worker ran here before: the next one is a replacement
        self.restart_at: float | None = None  # when a dead worker is due to be replaced


class Supervisor:
    """Keeps `workers` worker processes serving on `host:port` until told to stop.

    `request_timeout_s` is the workers' request deadline: a stopping worker gets that long
    plus STOP_MARGIN_S to finish what it accepted before it is killed.
    """

    def __init__(
        self, workers: int, host: str, port: int, uvicorn_options: dict[str, Any], request_timeout_s: float = 30.0
    ) -> None:
        self.workers = workers
        self.host = host
        self.uvicorn_options = uvicorn_options
        self.stop_timeout_s = request_timeout_s + STOP_MARGIN_S
        self._reservation = reserve_port(host, port)
        self.port = int(self._reservation.getsockname()[1])
        self._context = multiprocessing.get_context("spawn")  # no forked threads or CUDA state
        self._slots: list[_Slot] = []
        self._stopping = threading.Event()

    def _start_one(self, replacement: bool = False) -> BaseProcess:
        process = self._context.Process(
            target=run_worker,
            args=(self.host, self.port, self.uvicorn_options, os.getpid(), replacement),
            name="plaudit-worker",
        )
        process.start()
        return process

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        log.info("starting %d workers on http://%s:%d", self.workers, self.host, self.port)
        self._slots = [_Slot() for _ in range(self.workers)]
        try:
            for slot in self._slots:
                self._fill(slot)
            while not self._stopping.wait(CHECK_INTERVAL_S):
                for slot in self._slots:
                    self._tend(slot)
        finally:
            self._stop_all()
            self._reservation.close()

    def _fill(self, slot: _Slot) -> None:
        """Start a worker in `slot`; if the start itself fails, try again after a pause."""
        slot.restart_at = None
        slot.started_at = time.monotonic()
        try:
            slot.process = self._start_one(replacement=slot.started_before)
            slot.started_before = True
        except OSError as exc:  # out of memory or of processes: the running workers go on serving
            delay = self._schedule_restart(slot, early=True)
            log.error("could not start a worker (%s); trying again in %.3g s", exc, delay)

    def _schedule_restart(self, slot: _Slot, early: bool) -> float:
        """Empty `slot` and set when its next worker starts; returns the wait in seconds."""
        slot.early_deaths = slot.early_deaths + 1 if early else 0
        delay = restart_delay(slot.early_deaths)
        slot.process, slot.restart_at = None, time.monotonic() + delay
        return delay

    def _tend(self, slot: _Slot) -> None:
        """Notice a dead worker and schedule its replacement; start it when it is due."""
        process = slot.process
        if process is not None and not process.is_alive():
            lived = time.monotonic() - slot.started_at
            delay = self._schedule_restart(slot, early=lived < EARLY_DEATH_S)
            log.warning(
                "worker %s exited with code %s after %.1f s; starting another%s",
                process.pid, process.exitcode, lived, f" in {delay:.3g} s" if delay else "",
            )
        if slot.process is None and slot.restart_at is not None and time.monotonic() >= slot.restart_at:
            self._fill(slot)

    def _stop_all(self) -> None:
        processes = [slot.process for slot in self._slots if slot.process is not None]
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn stops accepting and drains
        give_up = time.monotonic() + self.stop_timeout_s
        for process in processes:
            process.join(max(0.0, give_up - time.monotonic()))
            if process.is_alive():
                log.warning("worker %s did not stop in %.0f s; killing it", process.pid, self.stop_timeout_s)
                process.kill()
                process.join()
        log.info("all workers stopped")
