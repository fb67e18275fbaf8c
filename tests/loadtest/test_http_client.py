"""The generator's own HTTP/1.1 client, against real TCP servers on 127.0.0.1.

uvicorn answers with Content-Length bodies (the other tests run the generator against it);
these servers send what uvicorn does not: chunked bodies, `Connection: close`, a body that
runs to the end of the connection, silence, and idle connections closed under the client.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

import pytest

from loadtest.http_client import ConnectFailed, HttpxClient, RawHttpClient, TransportFailed, make_http_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return head.split("\r\n", 1)[0], await reader.readexactly(length)


def _serve(handler: Handler, scenario: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await scenario(f"http://127.0.0.1:{port}")

    asyncio.run(main())


def test_chunked_and_close_delimited_bodies_and_connection_close() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        request_line, body = await _read_request(reader)
        payload = json.dumps({"echo": json.loads(body), "line": request_line}).encode()
        if connections == 1:  # chunked, in two chunks plus an extension and a trailer, then close
            half = len(payload) // 2
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            writer.write(b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: y\r\n\r\n" % (
                half, payload[:half], len(payload) - half, payload[half:]))
        else:  # no length at all: the body ends with the connection
            writer.write(b"HTTP/1.1 201 Created\r\n\r\n" + payload)
        await writer.drain()
        writer.close()

    async def scenario(url: str) -> None:
        async with RawHttpClient(url + "/base", timeout_s=5.0) as client:
            status, content = await client.request("POST", "/v1/score", {"items": [1, 2]})
            assert status == 200
            assert json.loads(content) == {"echo": {"items": [1, 2]}, "line": "POST /base/v1/score HTTP/1.1"}
            # The server closed the connection; the next request opens a new one.
            status, content = await client.request("POST", "/v1/score", {"n": 3})
            assert status == 201 and json.loads(content)["echo"] == {"n": 3}

    _serve(handler, scenario)
    assert connections == 2


def test_keep_alive_reuses_one_connection_and_survives_the_server_closing_it_when_idle() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        for _ in range(2):  # answer two requests on this connection, then close it unannounced
            _, body = await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async def scenario(url: str) -> None:
        async with RawHttpClient(url, timeout_s=5.0) as client:
            for n in range(5):
                assert await client.request("POST", "/x", {"n": n}) == (200, json.dumps({"n": n}).encode())
                await asyncio.sleep(0.05)  # let the close arrive, as an idle timeout would
            # The 3rd and 5th went out on a connection already closed, and again on a new one:
            # counted, since a server that died mid-request looks the same from here.
            assert client.resent == 2

    _serve(handler, scenario)
    assert connections == 3  # 2 + 2 + 1 requests: reused while open, reopened when closed


def test_errors_are_timeout_connect_and_transport() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async def times_out(url: str) -> None:
        async with RawHttpClient(url, timeout_s=0.2) as client:
            with pytest.raises(TimeoutError):
                await client.request("GET", "/healthz")

    async def not_http(url: str) -> None:
        async with RawHttpClient(url, timeout_s=2.0) as client:
            with pytest.raises(TransportFailed, match="status line"):
                await client.request("GET", "/healthz")

    _serve(silent, times_out)
    _serve(garbage, not_http)

    async def refused(port: int) -> None:
        async with RawHttpClient(f"http://127.0.0.1:{port}", timeout_s=2.0) as client:
            with pytest.raises(ConnectFailed) as failed:
                await client.request("GET", "/healthz")
        assert isinstance(failed.value.__cause__, ConnectionRefusedError), failed.value

    with socket.socket() as s:  # a port nobody listens on
        # Bound but not listening while the client tries it: connections are refused, and no
        # other process can take the port in the meantime.
        s.bind(("127.0.0.1", 0))
        asyncio.run(refused(s.getsockname()[1]))


def test_https_goes_through_httpx_and_other_schemes_are_refused() -> None:
    assert isinstance(make_http_client("http://127.0.0.1:8000", 1.0), RawHttpClient)
    assert isinstance(make_http_client("https://example.invalid", 1.0), HttpxClient)
    with pytest.raises(ValueError, match="http://"):
        RawHttpClient("ftp://127.0.0.1", 1.0)
