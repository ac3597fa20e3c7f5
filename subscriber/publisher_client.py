"""HTTP access from a subscriber to the publishers of the roots it follows."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx

from ..common.errors import BadRequest, NotFound, ServiceUnavailable

TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# A publisher may first have to build a whole file (an HDF5 dataset, converted chunk by chunk).
FILE_TIMEOUT = httpx.Timeout(600.0, connect=3.0)


class StaleDataset(ServiceUnavailable):
    """The publisher has a newer version of a dataset than the one being read."""


class PublisherClient:
    """One root's publisher API: list, info with etags, chunks and whole files."""

    def __init__(self, root: str, url: str, http: httpx.Client) -> None:
        self.root = root
        self.url = url.rstrip("/")
        self.http = http

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
        if resp.status_code == 404:
            raise NotFound(f"{self.root}/{route.split('/', 3)[-1]} not found on its publisher")
        if resp.status_code == 400:
            raise BadRequest(resp.json().get("detail", resp.text))
        if resp.status_code >= 500:
            raise ServiceUnavailable(
                f"The publisher of root {self.root} at {self.url} failed: {resp.status_code}"
            )
        return resp

    def list(self) -> list[str]:
        """Every dataset path of the root."""
        return self._get("/api/list").json()

    def info(self, path: str, etag: str | None = None) -> tuple[dict, str] | None:
        """(metadata, etag) of a dataset, or None when `etag` is still current."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        resp = self._get(f"/api/info/{quote(path)}", headers=headers)
        if resp.status_code == 304:
            return None
        return resp.json(), resp.headers.get("etag", "").strip('"')

    def chunk(self, path: str, nchunk: int, etag: str | None = None) -> bytes:
        """The compressed chunk `nchunk` of a dataset, as the publisher stores it.

        With `etag`, a chunk of any other version is refused (`StaleDataset`), so
        a cached container never mixes chunks of two versions.
        """
        headers = {"If-Match": f'"{etag}"'} if etag else {}
        resp = self._get(f"/api/chunk/{quote(path)}", params={"nchunk": nchunk}, headers=headers)
        if resp.status_code == 412:
            raise StaleDataset(f"{self.root}/{path} changed on its publisher")
        return resp.content

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

    def __init__(self) -> None:
        self._http = httpx.Client(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32)
        )

    def client(self, root: str, url: str) -> PublisherClient:
        return PublisherClient(root, url, self._http)

    def close(self) -> None:
        self._http.close()
