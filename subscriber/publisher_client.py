"""HTTP access from a subscriber to the publishers of the roots it follows."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import msgpack

from ..common.errors import BadRequest, NotFound, ServiceUnavailable
from ..common.falcon_app import ANNOUNCED_HEADER
from ..common.http_transport import Transport

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# A publisher may first have to build a whole file (an HDF5 dataset, converted chunk by chunk).
FILE_TIMEOUT = httpx.Timeout(600.0, connect=3.0)


UPSTREAM_PAUSE = 30.0
"""Seconds chunks skip an upstream subscriber that failed or was unreachable."""


class StaleDataset(ServiceUnavailable):
    """The publisher has a newer version of a dataset than the one being read."""


class NoReplication(Exception):
    """The publisher serves no change log nor snapshots (a Caterva2 before sequences)."""


class InvalidAnswer(ServiceUnavailable):
    """A publisher's answer that is not what its route promises (refused, nothing applied)."""


class Upstream:
    """A parent subscriber chunks are asked of first (tiers), skipped a while after it fails."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._skip_until = 0.0

    def usable(self) -> bool:
        return time.monotonic() >= self._skip_until

    def failed(self) -> None:
        # Not asked again for a while: every chunk would wait for its timeout first.
        self._skip_until = time.monotonic() + UPSTREAM_PAUSE


class PublisherClient:
    """One root's publisher API: list, info with etags, chunks and whole files.

    With an `upstream` subscriber (tiers), chunks of a version are asked of it first.
    """

    def __init__(
        self,
        root: str,
        url: str,
        http: httpx.Client,
        direct: Transport | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.root = root
        self.url = url.rstrip("/")
        self.http = http
        self.direct = direct  # the transport of `http`, for chunks (see `chunk`)
        self.upstream = upstream

    def _unreachable(self, exc: Exception) -> ServiceUnavailable:
        reason = exc.__class__.__name__
        return ServiceUnavailable(
            f"The publisher of root {self.root} at {self.url} is unreachable ({reason})"
        )

    def _get(self, route: str, **kwargs) -> httpx.Response:
        try:
            resp = self.http.get(f"{self.url}{route}", timeout=TIMEOUT, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check(resp.status_code, resp.content, route)
        return resp

    def _check(self, status: int, body: bytes | bytearray, route: str) -> None:
        """Turn an error answer into ours."""
        if status == 404:
            raise NotFound(f"{self.root}/{route.split('/', 3)[-1]} not found on its publisher")
        if status == 400:
            text = bytes(body).decode("utf-8", "replace")
            try:
                detail = json.loads(text).get("detail", text)
            except (ValueError, AttributeError):
                detail = text
            raise BadRequest(detail)
        if status >= 500:
            raise ServiceUnavailable(
                f"The publisher of root {self.root} at {self.url} failed: {status}"
            )

    def list(self) -> list[str]:
        """Every dataset path of the root."""
        return self._get("/api/list").json()

    def changes(self, since: int) -> dict | None:
        """The publisher's changes after `since` (undecoded map), or None if it has them no more.

        `NoReplication` when the publisher has no change log (an older Caterva2).
        """
        return self._replication("/api/changes", {"since": since})

    def snapshot(self, after: str = "") -> dict:
        """One page of the root's snapshot, from the dataset after `after` (undecoded map)."""
        return self._replication("/api/snapshot", {"after": after} if after else {})

    def _replication(self, route: str, params: dict) -> dict | None:
        try:
            resp = self.http.get(f"{self.url}{route}", params=params, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if resp.status_code == 410:
            return None
        if resp.status_code in (404, 405):
            raise NoReplication(f"the publisher of {self.root} has no {route}")
        self._check(resp.status_code, resp.content, route)
        if resp.status_code != 200:
            raise ServiceUnavailable(
                f"The publisher of {self.root} answered {route} with {resp.status_code}"
            )
        try:
            # Untrusted: plain maps, lists and scalars only; the caller checks every field.
            body = msgpack.unpackb(resp.content, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise InvalidAnswer(f"{route} of {self.root}: not msgpack ({exc})") from None
        if not isinstance(body, dict):
            raise InvalidAnswer(f"{route} of {self.root}: not a map")
        return body

    def info(self, path: str, etag: str | None = None) -> tuple[dict, str, bool] | None:
        """(metadata, etag, announced) of a dataset, or None when `etag` is still current.

        `announced` is false while the publisher has not announced this version
        (still being written, or its change message not sent yet).
        """
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        resp = self._get(f"/api/info/{quote(path)}", headers=headers)
        if resp.status_code == 304:
            return None
        announced = resp.headers.get(ANNOUNCED_HEADER, "true") != "false"
        return resp.json(), resp.headers.get("etag", "").strip('"'), announced

    def chunk(self, path: str, nchunk: int, etag: str | None = None) -> bytes | bytearray:
        """The compressed chunk `nchunk` of a dataset, as the publisher stores it.

        With `etag`, a chunk of any other version is refused (`StaleDataset`), so
        a cached container never mixes chunks of two versions. A chunk of a version
        is asked of the `upstream` subscriber first, with the same `If-Match`; when
        it holds another version (412), fails or cannot be reached, of the publisher.
        """
        if self.upstream is not None and etag and self.upstream.usable():
            try:
                route = f"/api/chunk/{quote(self.root)}/{quote(path)}"
                return self._chunk_at(self.upstream.url, route, path, nchunk, etag)
            except StaleDataset:
                pass  # it holds another version of the dataset
            except (NotFound, BadRequest) as exc:
                log.info("upstream %s has no %s/%s: %s", self.upstream.url, self.root, path, exc)
            except ServiceUnavailable as exc:
                log.warning("upstream %s failed (%s); asking publishers", self.upstream.url, exc)
                self.upstream.failed()
        return self._chunk_at(self.url, f"/api/chunk/{quote(path)}", path, nchunk, etag)

    def _chunk_at(
        self, base: str, route: str, path: str, nchunk: int, etag: str | None
    ) -> bytes | bytearray:
        """Chunk `nchunk` of `path` from the server at `base` (the publisher, or upstream)."""
        headers = {"If-Match": f'"{etag}"'} if etag else {}
        if self.direct is None:
            try:
                resp = self.http.get(
                    f"{base}{route}", params={"nchunk": nchunk}, headers=headers, timeout=TIMEOUT
                )
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            status, body = resp.status_code, resp.content
            self._check(status, body, route)
        else:
            # Straight into one buffer, which the cache takes as it is: chunks are
            # megabytes, and httpx would cost a copy and ~0.5 ms more per chunk.
            try:
                raw = self.direct.get(f"{base}{route}?nchunk={nchunk}", headers, TIMEOUT)
                body = raw.read_all()
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            status = raw.status
            self._check(status, body, route)
        if status == 412:
            raise StaleDataset(f"{self.root}/{path} changed on its publisher")
        return body

    def open_file(self, path: str) -> tuple[int | None, Iterator[bytes]]:
        """(length, blocks) of the whole stored file, checked before any byte is read."""
        request = self.http.build_request(
            "GET", f"{self.url}/api/file/{quote(path)}", timeout=FILE_TIMEOUT
        )
        try:
            resp = self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if resp.status_code != 200:
            resp.close()
            if resp.status_code == 404:
                raise NotFound(f"{self.root}/{path} not found on its publisher")
            raise ServiceUnavailable(f"The publisher of {self.root} failed: {resp.status_code}")
        length = resp.headers.get("content-length")

        def blocks() -> Iterator[bytes]:
            try:
                yield from resp.iter_bytes(1024 * 1024)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            finally:
                resp.close()

        return (int(length) if length else None), blocks()


class PublisherPool:
    """Keeps one pooled HTTP client for all publishers (kept-alive connections)."""

    def __init__(
        self,
        ca_file: str | None = None,
        upstream: str | None = None,
        root_upstreams: dict[str, str | None] | None = None,
    ) -> None:
        """`ca_file`: the CAs that sign https publishers' certificates (default: the system's);
        `upstream`: the subscriber chunks are asked of first (tiers); `root_upstreams`:
        another one for some roots (None: their publisher directly)."""
        known: dict[str, Upstream] = {}  # one per URL: a failure pauses it for every root

        def upstream_at(url: str | None) -> Upstream | None:
            return known.setdefault(url, Upstream(url)) if url else None

        self.upstream = upstream_at(upstream)
        self._root_upstreams = {
            root: upstream_at(url) for root, url in (root_upstreams or {}).items()
        }
        # http.client underneath: httpx's own transport costs ~0.5 ms more per request.
        self._transport = Transport(verify=ca_file or True)
        self._http = httpx.Client(transport=self._transport)

    def client(self, root: str, url: str) -> PublisherClient:
        upstream = self._root_upstreams.get(root, self.upstream)
        return PublisherClient(root, url, self._http, self._transport, upstream)

    def close(self) -> None:
        self._http.close()
