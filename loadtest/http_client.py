"""The load generator's HTTP clients: one keep-alive connection each, one request at a time.

For plain http:// targets (the default, 127.0.0.1) the generator speaks HTTP/1.1 itself over an
asyncio stream. httpx cost ~1.5 ms per request at idle on these 2-core machines (a paced
GET /healthz took 2.9 ms through httpx.Client and 1.4 ms through a bare socket). The generator
added that time to every latency it reported, and took that CPU from the server under test.
https:// targets go through httpx, which brings TLS and proxies done right.

Both clients have the same one method, `request`, and raise the same three errors, so
the generator can count outcomes without knowing which client it holds.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

CLOSE_TIMEOUT_S = 1.0  # for a closing connection to finish; then it is dropped


class ConnectFailed(ConnectionError):
    """The server could not be reached."""


class TransportFailed(ConnectionError):
    """The connection broke, or the server's answer was not valid HTTP/1.1."""


class RawHttpClient:
    """HTTP/1.1 with keep-alive over one asyncio connection; for http:// URLs only.

    It reads exactly what uvicorn and other servers send (Content-Length or chunked bodies,
    `Connection: close`) and reconnects when the server has closed an idle connection.
    Timeouts raise TimeoutError.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"RawHttpClient takes http://host[:port] URLs, got {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._host_header = f"{self.host}:{self.port}" if parts.port else self.host
        # Requests sent a second time, on a new connection, because the kept-alive one was closed
        # or reset under them: usual for an idle connection the server let go, but it also hides
        # a server that died mid-request, so the report counts them.
        self.resent = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawHttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                # Bounded: a stalled peer with unsent data would keep wait_closed() waiting.
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except OSError:
                pass

    async def request(self, method: str, path: str, json_body: Any = None) -> tuple[int, bytes]:
        """(status, body) of one request; raises TimeoutError, ConnectFailed or TransportFailed."""
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
        if json_body is not None:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        message = head.encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout_s):
                reused = self._writer is not None
                try:
                    return await self._exchange(message)
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
                    # A kept-alive connection the server had already closed: nothing of this
                    # request was answered, so it is safe to send it once more on a new one.
                    await self.aclose()
                    if not reused:
                        raise
                    self.resent += 1
                    return await self._exchange(message)
        except TimeoutError:
            await self.aclose()
            raise
        except ConnectFailed:
            raise
        except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as exc:
            await self.aclose()
            raise TransportFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, message: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                raise ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        assert self._reader is not None and self._writer is not None
        self._writer.write(message)
        await self._writer.drain()
        status, headers = _parse_head(await self._reader.readuntil(b"\r\n\r\n"))
        if "content-length" in headers:
            content = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await _read_chunked(self._reader)
        else:
            content = await self._reader.read()  # the body runs to the end of the connection
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, content


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(rest.split(" ", 1)[0])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields, then the blank line that ends the message
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the CRLF after each chunk


class HttpxClient:
    """The same interface over httpx, for https:// targets."""

    def __init__(self, base_url: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> None:
        self.resent = 0  # httpx's own retries are not seen here
        self._client = httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=httpx.Timeout(timeout_s),
            verify=tls if tls is not None else True,
            trust_env=False,  # a proxy from the environment must not sit between us and the target
        )

    async def __aenter__(self) -> HttpxClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, json_body: Any = None) -> tuple[int, bytes]:
        try:
            response = await self._client.request(method, path, json=json_body)
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except httpx.ConnectError as exc:
            raise ConnectFailed(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise TransportFailed(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, response.content


HttpClient = RawHttpClient | HttpxClient


def make_http_client(base_url: str, timeout_s: float, tls: ssl.SSLContext | None = None) -> HttpClient:
    """RawHttpClient for http:// URLs, HttpxClient for https://."""
    if urlsplit(base_url).scheme == "http":
        return RawHttpClient(base_url, timeout_s)
    return HttpxClient(base_url, timeout_s, tls)
