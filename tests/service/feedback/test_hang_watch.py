"""A PostgreSQL server that stops answering while its TCP stack still does: the call waiting on it
fails after the hang limit instead of waiting for ever, and nothing it began is kept.

The hung server is a real one behind a relay that stops relaying but keeps every connection open:
the client's bytes are acknowledged and nothing comes back, as from a stopped server process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.feedback import database
from service.feedback.hang_watch import HangWatch

CUT_MESSAGE = "did not answer within"
JOIN_S = 60  # only so that a failing test ends; the cuts below come after 1-4 s


class HangingRelay:
    """Relays TCP to `target` until `hang()`; from then on it reads what either side sends and
    passes nothing on, until `resume()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.relaying = threading.Event()
        self.relaying.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hang(self) -> None:
        self.relaying.clear()

    def resume(self) -> None:
        self.relaying.set()

    def close(self) -> None:
        self.closed = True
        self.relaying.set()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.relaying.wait()
                if self.closed:
                    return
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class SocketConnection:
    """The two things HangWatch reads of a psycopg connection (`closed`, `pgconn.socket`), over a
    real socket, for the watch's own rules where no PostgreSQL answers."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pgconn = self

    @property
    def closed(self) -> bool:
        return self.sock.fileno() == -1

    @property
    def socket(self) -> int:
        return self.sock.fileno()


def test_a_connection_held_past_its_limit_is_cut_and_one_released_in_time_is_not() -> None:
    watch = HangWatch(limit_s=0.2)
    hung, hung_server = socket.socketpair()
    released, released_peer = socket.socketpair()
    try:
        returned = SocketConnection(released)
        watch.hold(returned)
        watch.release(returned)
        watch.hold(SocketConnection(hung))
        # The server never answers: only the watch can end this wait.
        assert _run_in_thread(lambda: hung.recv(1) == b"" or pytest.fail("data arrived")) == ["done"]
        time.sleep(0.3)  # past the released connection's deadline too
        assert watch.cut == 1 and watch.held() == 0
        released_peer.sendall(b"x")
        assert released.recv(1) == b"x"  # not shut down
    finally:
        for sock in (hung, hung_server, released, released_peer):
            sock.close()


def test_a_descriptor_number_reused_by_another_socket_is_never_cut() -> None:
    """libpq closes its descriptor by itself when the server drops the connection, and the
    number may belong to another socket by the time the deadline comes: that one must live."""
    watch = HangWatch(limit_s=0.1)
    first, first_peer = socket.socketpair()
    connection = SocketConnection(first)
    watch.hold(connection)
    number = first.fileno()
    first.close()  # as libpq drops it
    other, other_peer = socket.socketpair()
    if other.fileno() == number:  # the lowest free number: most likely the one just freed
        reused = other
    else:
        os.dup2(other.fileno(), number)  # another socket under the same number
        reused = socket.socket(fileno=number)
    try:
        time.sleep(0.3)  # past the deadline: the watch cuts the socket it held, not the number
        assert watch.cut == 1 and watch.held() == 0
        assert first_peer.recv(1) == b""  # the held socket was shut down
        other_peer.sendall(b"x")
        assert reused.recv(1) == b"x"  # the socket now under that number is open both ways
        reused.sendall(b"y")
        assert other_peer.recv(1) == b"y"
    finally:
        for sock in {first_peer, other, other_peer, reused}:
            sock.close()


@pytest.fixture
def relay(postgres_schema_url: str) -> Iterator[HangingRelay]:
    server = make_url(postgres_schema_url)
    hanging = HangingRelay((server.host or "127.0.0.1", server.port or 5432))
    try:
        yield hanging
    finally:
        hanging.close()


def _engine_through(relay: HangingRelay, url: str, hang_limit_s: float) -> sa.Engine:
    through = make_url(url).set(host="127.0.0.1", port=relay.port)
    # connect_timeout 2 s is libpq's least; it is also the checkout ping's limit.
    return database.create_engine(database.parse_url(through.render_as_string(hide_password=False)),
                                  connect_timeout_s=2, hang_limit_s=hang_limit_s)


def _run_in_thread(call) -> list[BaseException | str]:  # type: ignore[no-untyped-def]
    """`call()` in a thread; ["done"] or [the exception it raised]. Fails the test if it hangs."""
    outcome: list[BaseException | str] = []

    def target() -> None:
        try:
            call()
            outcome.append("done")
        except BaseException as exc:  # noqa: BLE001  # the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(JOIN_S)
    assert not thread.is_alive(), "the call still waits on the hung server"
    return outcome


_INSERT = sa.text("INSERT INTO written (n) VALUES (:n)")


@pytest.mark.postgres
def test_a_write_on_a_server_that_hangs_mid_transaction_fails_and_keeps_nothing(
    relay: HangingRelay, postgres_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _engine_through(relay, postgres_schema_url, hang_limit_s=1.0)
    try:
        with database.transaction(engine, write=True) as connection:
            connection.execute(sa.text("CREATE TABLE written (n integer)"))

        def write_as_the_server_hangs() -> None:
            with database.transaction(engine, write=True) as connection:
                connection.execute(_INSERT, {"n": 1})
                relay.hang()
                connection.execute(_INSERT, {"n": 2})

        with caplog.at_level(logging.WARNING, logger="plaudit.feedback"):
            (outcome,) = _run_in_thread(write_as_the_server_hangs)
        assert isinstance(outcome, sa.exc.OperationalError), outcome
        assert outcome.connection_invalidated  # the pool drops the cut connection
        cuts = [r.getMessage() for r in caplog.records if CUT_MESSAGE in r.getMessage()]
        assert len(cuts) == 1 and "within 1 s" in cuts[0]  # the transaction's limit, not the ping's

        relay.resume()
        with database.transaction(engine, write=True) as connection:  # the server is back: writes go on
            connection.execute(_INSERT, {"n": 3})
        with database.transaction(engine, write=False) as connection:
            kept = connection.execute(sa.text("SELECT n FROM written ORDER BY n")).scalars().all()
        assert kept == [3]  # the cut transaction's first row was rolled back with it
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_to_a_hung_server_fails_its_ping_instead_of_waiting(
    relay: HangingRelay, postgres_schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A long hang limit: only the checkout ping's own limit (connect_timeout, 2 s) can end this.
    engine = _engine_through(relay, postgres_schema_url, hang_limit_s=600.0)
    try:
        with database.transaction(engine, write=False) as connection:  # leaves a connection in the pool
            connection.execute(sa.text("SELECT 1"))
        relay.hang()

        def read() -> None:
            with database.transaction(engine, write=False) as connection:
                connection.execute(sa.text("SELECT 1"))

        with caplog.at_level(logging.WARNING, logger="plaudit.feedback"):
            (outcome,) = _run_in_thread(read)
        # The ping was cut; the pool's one retry, a new connection, met the hung server too and
        # gave up after connect_timeout.
        assert isinstance(outcome, sa.exc.OperationalError), outcome
        assert "timeout" in str(outcome.orig).lower()
        cuts = [r.getMessage() for r in caplog.records if CUT_MESSAGE in r.getMessage()]
        assert len(cuts) == 1 and "within 2 s" in cuts[0]

        relay.resume()
        assert _run_in_thread(read) == ["done"]
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("time_limited", [True, False])
def test_only_time_limited_transactions_are_cut(postgres_schema_url: str, time_limited: bool) -> None:
    """A server busy past the limit looks hung to the watch; a migration, which may
    take long, runs with `time_limited=False` and is let finish."""
    engine = database.create_engine(database.parse_url(postgres_schema_url), hang_limit_s=0.5)

    def slow_statement() -> None:
        # A read: a write's server session would hold the write lock until its sleep ends,
        # cut or not, and the next writer would wait for it.
        with database.transaction(engine, write=False, time_limited=time_limited) as connection:
            connection.execute(sa.text("SELECT pg_sleep(1.5)"))

    def quick_statement() -> None:
        with database.transaction(engine, write=False) as connection:
            connection.execute(sa.text("SELECT 1"))

    try:
        (outcome,) = _run_in_thread(slow_statement)
        if time_limited:
            assert isinstance(outcome, sa.exc.OperationalError), outcome
        else:
            assert outcome == "done"
        assert _run_in_thread(quick_statement) == ["done"]  # and the engine goes on serving
    finally:
        engine.dispose()
