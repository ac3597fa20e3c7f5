"""HTTP/1.1 on the standard library's `http.client`, for the client and the subscriber.

httpx spends about a millisecond of CPU per request in its own layers (URL and
header models, cookies, h11's state machine) and reads bodies 64 KiB at a time:
more than a subscriber on the same machine needs to serve a small slice, and a
third of the speed of a whole-file download. Two ways in, over one pool of
keep-alive connections:

- `Transport`, an httpx transport: every request the `Client` sends through
  httpx keeps httpx's behaviour (event hooks, cookies, `raise_for_status`,
  exceptions, proxies for the URLs they apply to);
- `Transport.get`, for the bulk reads (`fetch`, `download`): a GET that skips
  the httpx layers and hands back the raw response, to be read into one buffer.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept, as httpx does
MAX_IDLE = 20  # idle connections kept per server, as httpx does
READ_SIZE = 1 << 20  # bytes per read of a streamed body
DEFAULT_PORTS = {"http": 80, "https": 443}

Key = tuple[str, str, int]


def timeouts(timeout: Any) -> dict[str, float | None]:
    """`connect`, `read`, `write` seconds from a number, an `httpx.Timeout` or its dict."""
    if isinstance(timeout, dict):
        return {k: timeout.get(k) for k in ("connect", "read", "write")}
    if isinstance(timeout, httpx.Timeout):
        return {"connect": timeout.connect, "read": timeout.read, "write": timeout.write}
    return {"connect": timeout, "read": timeout, "write": timeout}


def _reusable(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can take another request (the server has not closed it)."""
    sock = conn.sock
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket):
        return True  # TLS sends records unasked (tickets): readable says nothing here
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    # An idle connection has nothing to read: readable means closed (or garbage).
    return not readable


class RawResponse:
    """A response read straight off the connection (`Transport.get`)."""

    def __init__(self, transport: Transport, key: Key, conn: http.client.HTTPConnection, resp):
        self._transport, self._key, self._conn, self._resp = transport, key, conn, resp
        self.status: int = resp.status
        self.reason: str = resp.reason
        self.headers = resp.msg  # case-insensitive `get`
        # What http.client expects of the body (0 for HEAD, 204, 304; None if chunked).
        self.length: int | None = resp.length
        self._done = False

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as sent (http.client decodes them as latin-1)."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]

    def readinto(self, buffer: Any) -> int:
        """Read the next bytes of the body into `buffer`; 0 at the end."""
        try:
            with _mapped(read=True):
                n = self._resp.readinto(buffer)
        except BaseException:
            self.fail()
            raise
        if n == 0:
            self.close()
        return n

    def read_into(self, view: memoryview) -> None:
        """Fill `view` with the next bytes of the body; `httpx.RemoteProtocolError` if it ends."""
        done, n = 0, len(view)
        while done < n:
            got = self.readinto(view[done:])
            if got == 0:
                raise httpx.RemoteProtocolError("Server disconnected in the middle of a body")
            done += got

    def abort(self) -> None:
        """Drop the connection now, from any thread (a read waiting on it ends)."""
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.fail()

    def read_all(self) -> bytearray:
        """The whole body, in one writable buffer (no copy when the length is known)."""
        if self.length is not None:
            body = bytearray(self.length)
            view, done = memoryview(body), 0
            while done < self.length:
                n = self.readinto(view[done:])
                if n == 0:
                    self.fail()
                    raise httpx.RemoteProtocolError("Server disconnected in the middle of a body")
                done += n
            self.close()
            return body
        body = bytearray()
        try:
            with _mapped(read=True):
                while data := self._resp.read1(READ_SIZE):
                    body += data
        except BaseException:
            self.fail()
            raise
        self.close()
        return body

    def close(self) -> None:
        """Give the connection back when the body was read whole, else drop it."""
        if self._done:
            return
        self._done = True
        self._transport._finish(self._key, self._conn, self._resp)

    def fail(self) -> None:
        """Drop the connection: reading the body went wrong."""
        self._done = True
        self._resp.close()
        self._conn.close()


class _mapped:
    """Turn socket and http.client errors into the httpx exceptions the client documents."""

    def __init__(self, *, connect: bool = False, read: bool = False, request=None) -> None:
        self.connect, self.read, self.request = connect, read, request

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, httpx.HTTPError):
            return False
        kw = {"request": self.request} if self.request is not None else {}
        message = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            cls = (
                httpx.ConnectTimeout
                if self.connect
                else httpx.ReadTimeout
                if self.read
                else httpx.WriteTimeout
            )
        elif isinstance(exc, http.client.RemoteDisconnected):
            cls, message = (
                httpx.RemoteProtocolError,
                "Server disconnected without sending a response.",
            )
        elif isinstance(exc, http.client.HTTPException):
            cls = httpx.RemoteProtocolError
        elif isinstance(exc, OSError):
            cls = (
                httpx.ConnectError
                if self.connect
                else httpx.ReadError
                if self.read
                else httpx.WriteError
            )
        else:
            return False
        raise cls(message, **kw) from exc


class _NetworkStream:
    """What httpx's `network_stream` extension offers that callers use: `get_extra_info`."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def get_extra_info(self, info: str) -> Any:
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return self._sock.getpeername()
        if info == "socket":
            return self._sock
        if info == "ssl_object":
            return self._sock if isinstance(self._sock, ssl.SSLSocket) else None
        return None


class _Body(httpx.SyncByteStream):
    """A response body for httpx, streamed off the connection."""

    def __init__(self, raw: RawResponse, request: httpx.Request) -> None:
        self._raw, self._request = raw, request

    def __iter__(self) -> Iterator[bytes]:
        resp = self._raw._resp
        try:
            with _mapped(read=True, request=self._request):
                while data := resp.read1(READ_SIZE):
                    yield data
        except BaseException:
            self._raw.fail()
            raise
        self._raw.close()

    def close(self) -> None:
        self._raw.close()


class Transport(httpx.BaseTransport):
    """HTTP/1.1 over `http.client` connections kept alive per server (thread-safe)."""

    def __init__(self, verify: ssl.SSLContext | str | bool = True, trust_env: bool = True) -> None:
        self._verify, self._trust_env = verify, trust_env
        self._ssl_context: ssl.SSLContext | None = None
        self._idle: dict[Key, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- connections -----------------------------------------------------------

    def _new(
        self, key: Key, connect_timeout: float | None, request: httpx.Request | None
    ) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            if self._ssl_context is None:
                # httpx's own context: the same certificates, checks and environment.
                self._ssl_context = httpx.create_ssl_context(self._verify, None, self._trust_env)
            conn = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=self._ssl_context
            )
        elif scheme == "http":
            conn = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        else:
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'"
            )
        with _mapped(connect=True, request=request):
            conn.connect()
        return conn

    def _acquire(self, key: Key) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(key)
            while idle:
                conn, since = idle.pop()
                if now - since < KEEPALIVE_EXPIRY and _reusable(conn):
                    return conn
                conn.close()
        return None

    def _finish(self, key: Key, conn: http.client.HTTPConnection, resp: Any) -> None:
        """Return a connection whose response was read whole; close any other."""
        # The length left says whether a body was read whole (`read1` leaves one read to
        # its last byte open); a chunked body is closed after its last chunk.
        whole = resp.length == 0 if resp.length is not None else resp.isclosed()
        if whole and not resp.will_close and conn.sock is not None:
            resp.close()  # http.client sends no new request before this
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if not self._closed and len(idle) < MAX_IDLE:
                    idle.append((conn, time.monotonic()))
                    return
        resp.close()
        conn.close()

    def close(self) -> None:
        """Close every idle connection (those in use close when their response ends)."""
        with self._lock:
            idle, self._idle = self._idle, {}
            self._closed = True
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    # -- requests --------------------------------------------------------------

    def _exchange(
        self,
        key: Key,
        method: str,
        target: str,
        headers: Iterable[tuple[Any, Any]],
        body: Iterable[bytes] | None,
        chunked: bool,
        limits: dict[str, float | None],
        request: httpx.Request | None = None,
    ) -> RawResponse:
        """Send a request and read the response head; a GET met by a dropped keep-alive
        connection is sent once more on a new one."""
        headers = list(headers)
        for attempt in (0, 1):
            conn = self._acquire(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = self._new(key, limits["connect"], request)
            try:
                conn.sock.settimeout(limits["write"])
                with _mapped(request=request):
                    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                    for name, value in headers:
                        conn.putheader(name, value)
                    conn.endheaders()
                    for piece in body or ():
                        if chunked:
                            if piece:
                                conn.send(b"%X\r\n%b\r\n" % (len(piece), piece))
                        else:
                            conn.send(piece)
                    if chunked:
                        conn.send(b"0\r\n\r\n")
                conn.sock.settimeout(limits["read"])
                with _mapped(read=True, request=request):
                    resp = conn.getresponse()
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                conn.close()
                if reused and method in ("GET", "HEAD") and body is None:
                    continue  # the server closed it while idle: a fresh one will do
                raise
            except BaseException:
                conn.close()
                raise
            return RawResponse(self, key, conn, resp)
        raise AssertionError("unreachable")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send an httpx request (the httpx transport interface)."""
        url = request.url
        key = (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0))
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        has_body = "content-length" in request.headers or chunked
        raw = self._exchange(
            key,
            request.method,
            url.raw_path.decode("ascii"),
            request.headers.raw,
            request.stream if has_body else None,  # type: ignore[arg-type]
            chunked,
            timeouts(request.extensions.get("timeout", {})),
            request,
        )
        return httpx.Response(
            status_code=raw.status,
            headers=raw.raw_headers(),
            stream=_Body(raw, request),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": raw.reason.encode("latin-1", "replace"),
                "network_stream": _NetworkStream(raw._conn.sock),
            },
            request=request,
        )

    def get(self, url: str, headers: dict[str, str], timeout: Any) -> RawResponse:
        """GET `url` without the httpx layers; the caller reads (and closes) the response."""
        parts = urllib.parse.urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        key = (scheme, host, parts.port or DEFAULT_PORTS.get(scheme, 0))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        sent = [("Host", netloc), ("Accept-Encoding", "identity"), *headers.items()]
        return self._exchange(key, "GET", target, sent, None, False, timeouts(timeout))
