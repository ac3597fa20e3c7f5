"""`POST /api/load_from_url/<path>`: the subscriber fetches a dataset from an http(s) URL.

Asking a server to fetch a URL opens a server-side request forgery door, so
every load is held to:

- `http` and `https` only, at most `MAX_REDIRECTS` redirects, each checked anew;
- addresses: the host is resolved once and the connection goes to the address
  checked (no second lookup an attacker's DNS could answer differently);
  loopback, private, link-local, multicast, reserved and unspecified addresses
  are refused unless a network in `load_from_url_hosts` holds them (for tests
  and labs, e.g. `["127.0.0.1/32"]`);
- a size limit (`load_from_url_max_size`) and the writer's quota, both enforced
  while the body arrives;
- a timeout (`load_from_url_timeout`) for connecting and for each read.

What arrives goes through the upload path (`FileOps.upload`): validated as
Blosc2 or HDF5 by its name, other files stored compressed, quota charged.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import falcon
import httpx

from ..common.errors import BadRequest, ContentTooLarge, Forbidden, ValidationError
from .api_data import json_body
from .file_ops import FileOps

MAX_REDIRECTS = 5
READ_BLOCK = 1 << 20
MAX_FORM = 64 * 1024  # bytes of a form body read: a URL is far shorter
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class UrlPolicy:
    """What a load may reach and how much it may bring."""

    allowed_networks: tuple[Network, ...] = field(default_factory=tuple)
    max_size: int = 1 << 30
    timeout: float = 30.0

    @classmethod
    def from_hosts(cls, hosts: list[str], max_size: int, timeout: float) -> UrlPolicy:
        """A policy allowing the networks named in `hosts` ("127.0.0.1", "10.0.0.0/8", "::1")."""
        try:
            networks = tuple(ipaddress.ip_network(h.strip(), strict=False) for h in hosts)
        except ValueError as exc:
            raise ValueError(f"load_from_url_hosts: {exc}") from None
        return cls(networks, max_size, timeout)

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Target:
    """A URL checked against the policy: where to connect, and what to ask for."""

    url: str
    host: str
    address: str


def check_url(url: str, policy: UrlPolicy) -> Target:
    """The URL's host resolved and checked; 400 for a bad URL, 403 for a refused address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"Only http and https URLs can be loaded, not {parts.scheme or url!r}")
    host = parts.hostname
    if not host:
        raise BadRequest(f"The URL {url!r} names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest(f"The URL {url!r} has a bad port") from None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadRequest(f"The host {host!r} cannot be resolved: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]
    refused = [a for a in addresses if not policy.allows(a)]
    if refused or not addresses:
        raise Forbidden(
            f"Loading from {host} ({refused[0] if refused else 'no address'}) is refused: "
            "private, loopback and link-local addresses are not reachable from here "
            "unless load_from_url_hosts allows them"
        )
    return Target(url, host, str(addresses[0]))


def _connect_url(target: Target) -> str:
    """The URL with its host replaced by the checked address (no second DNS lookup)."""
    parts = urllib.parse.urlsplit(target.url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    netloc = address + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Body:
    """A response body read like a file by the upload path, stopped past `limit` bytes."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self.chunks = chunks
        self.limit = limit
        self.size = 0
        self.pending = b""

    def read(self, n: int = -1) -> bytes:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return b""
            self.size += len(chunk)
            if self.size > self.limit:
                raise ContentTooLarge(f"The URL's content is bigger than {self.limit} bytes")
            self.pending = chunk
        n = len(self.pending) if n is None or n < 0 else n
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def name_in_url(url: str) -> str:
    """The file name a URL's path ends with ('' when none)."""
    return PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name


def load(ops: FileOps, policy: UrlPolicy, logical: str, url: str, user) -> str:
    """Fetch `url` into the writable path `logical`; returns the logical path stored."""
    ops.roots.locate(logical, user, "Uploading")  # rights first, before any request goes out
    timeout = httpx.Timeout(policy.timeout)
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target = check_url(url, policy)
            request = client.build_request(
                "GET",
                _connect_url(target),
                headers={"Host": urllib.parse.urlsplit(url).netloc.rsplit("@", 1)[-1]},
                extensions={"sni_hostname": target.host},
            )
            try:
                response = client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise BadRequest(f"Loading {url} failed: {exc or type(exc).__name__}") from None
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urllib.parse.urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise BadRequest(
                        f"Loading {url} failed: it answered HTTP {response.status_code} "
                        f"{response.reason_phrase}"
                    )
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > policy.max_size:
                    raise ContentTooLarge(
                        f"The URL's content ({length} bytes) is bigger than the "
                        f"{policy.max_size} bytes a load may bring"
                    )
                body = Body(_chunks(response, url), policy.max_size)
                return ops.upload(logical, name_in_url(url), body, user)
            finally:
                response.close()
    raise BadRequest(f"Loading stopped after {MAX_REDIRECTS} redirects")


def _chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(READ_BLOCK)
    except httpx.HTTPError as exc:
        reason = exc or type(exc).__name__
        raise BadRequest(f"Loading {url} failed while reading: {reason}") from None


class LoadFromUrlResource:
    """`POST /api/load_from_url/<path>` with `remote_url` (a form field, or JSON)."""

    def __init__(self, ops: FileOps, policy: UrlPolicy) -> None:
        self.ops = ops
        self.policy = policy

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        self.ops.roots.locate(path, req.context.user, "Uploading")  # 401 before the body
        if (req.content_type or "").startswith("application/json"):
            url = json_body(req, "remote_url")["remote_url"]
        else:
            text = req.bounded_stream.read(MAX_FORM).decode(errors="replace")
            form = urllib.parse.parse_qs(text)
            if "remote_url" not in form:
                raise ValidationError("body", "remote_url", "Field required")
            url = form["remote_url"][0]
        if not isinstance(url, str) or not url:
            raise ValidationError(
                "body", "remote_url", "Input should be a valid string", "string_type"
            )
        resp.media = load(self.ops, self.policy, path, url, req.context.user)
