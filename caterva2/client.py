"""Python client of a Caterva2 subscriber: `Client`, `Root`, `File`, `Dataset`."""

from __future__ import annotations

import functools
import os
import pathlib
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, NamedTuple

import blosc2
import httpx
import numpy as np

from caterva2 import api_utils, uploads
from caterva2.api_utils import Progress
from caterva2.common.b2meta import str_to_dtype
from caterva2.common.coordinates import encode_indices
from caterva2.common.http_transport import Transport
from caterva2.groups import Group
from caterva2.ingestion import ArrayIngestion, ClientIngestion
from caterva2.root_entries import RootEntry
from caterva2.root_entries import as_path as _as_path

# Uploads and downloads wait for the server to compress or read whole files,
# so their read timeout is never shorter than this (seconds).
TRANSFER_READ_TIMEOUT = 60.0


class BasicAuth(NamedTuple):
    """User name and password used to log in."""

    username: str | None = None
    password: str | None = None


class Client(ClientIngestion):
    """Connection to a subscriber; keeps one keep-alive HTTP connection pool."""

    def __init__(self, urlbase: str, auth: Any = None, timeout: float = 5) -> None:
        if not isinstance(urlbase, str) or not urlbase.startswith(("http://", "https://")):
            raise ValueError(f"urlbase must start with http:// or https://, not {urlbase!r}")
        # A trailing slash would produce `//api/...` URLs that servers reject.
        self.urlbase = urlbase.rstrip("/")
        self.timeout = timeout
        self.cookie: str | None = None
        self._http: httpx.Client | None = None
        # What `http` built, and its transport for direct reads (see `_direct`).
        self._own: tuple[httpx.Client, Transport | None] | None = None
        if auth is None:
            return
        if isinstance(auth, tuple) and len(auth) == 2:
            username, password = auth
        else:
            raise ValueError("auth must be a (username, password) tuple or a BasicAuth")
        if username and password:
            try:
                self.cookie = api_utils.get_auth_cookie(
                    self.urlbase, (username, password), timeout=self.timeout, client=self.http
                )
            except BaseException:
                self.close()  # nobody will get a handle on this client to close it
                raise

    # --- connection -------------------------------------------------------

    @property
    def http(self) -> httpx.Client:
        """The persistent ``httpx.Client`` (created on first use)."""
        if self._http is None or self._http.is_closed:
            # The auth cookie goes in an explicit header; a jar that refuses
            # every cookie keeps server cookies from piling up behind our back.
            jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
            transport = Transport()
            self._http = httpx.Client(follow_redirects=False, cookies=jar, transport=transport)
            # With proxies in the environment httpx sends some requests through them:
            # direct reads, which would not, are off then.
            self._own = (self._http, None if urllib.request.getproxies() else transport)
        return self._http

    def _direct(self) -> Transport | None:
        """The transport for reads that skip the httpx layers (fetch, download), if usable.

        Not when `http` was replaced (by a test's mock transport, say).
        """
        http = self.http
        return self._own[1] if self._own is not None and self._own[0] is http else None

    def close(self) -> None:
        """Close the HTTP connection (a later call opens a new one)."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client: {self.urlbase}>"

    def _url(self, verb: str, path: str | os.PathLike | None = None) -> str:
        return api_utils.api_url(self.urlbase, verb, path)

    def _get(self, url: str, params: dict | None = None, timeout: Any = None) -> Any:
        return api_utils.get(
            url,
            params=params,
            timeout=self.timeout if timeout is None else timeout,
            auth_cookie=self.cookie,
            client=self.http,
        )

    def _post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        return api_utils.post(
            url,
            json=json,
            auth_cookie=self.cookie,
            timeout=self.timeout,
            client=self.http,
            **kwargs,
        )

    def _transfer_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=max(self.timeout, TRANSFER_READ_TIMEOUT))

    # --- roots and metadata -----------------------------------------------

    def get_roots(self) -> dict:
        """Return the roots the server offers, keyed by name."""
        return self._get(self._url("roots"))

    def get(self, path: str | os.PathLike) -> Root | Group | File | Dataset:
        """A `Root` for a root name, else the `Group`/`File`/`Dataset`/`Table` at ``path``."""
        root, _, rest = _as_path(path).partition("/")
        if not rest:
            return Root(self, root)
        return Root(self, root)[rest]

    def subscribe(self, root: str) -> str:
        """Ask the server to follow a (remote) root; return its answer."""
        try:
            return self._post(self._url("subscribe", root))
        except httpx.HTTPStatusError as exc:
            detail = api_utils.error_detail(exc)
            # A server without the route answers a bare 404: nothing to follow.
            if exc.response.status_code == 404 and root not in detail:
                warnings.warn(
                    "This server does not support subscribing; nothing to do",
                    stacklevel=2,
                )
                return "Ok"
            raise

    def get_list(self, path: str | os.PathLike) -> list[str]:
        """List the datasets below ``path`` (a root, directory or file)."""
        return self._get(self._url("list", _as_path(path)))

    def get_info(self, path: str | os.PathLike) -> dict:
        """Return the metadata of the dataset at ``path``."""
        return self._get(self._url("info", _as_path(path)))

    # --- data -------------------------------------------------------------

    def fetch(self, path: str | os.PathLike, slice_: Any = None) -> np.ndarray | bytes:
        """Return data of ``path`` as NumPy (arrays) or ``bytes`` (byte streams)."""
        if isinstance(slice_, str):
            params = {"slice_": slice_}
            return api_utils.fetch_data(
                _as_path(path),
                self.urlbase,
                params,
                auth_cookie=self.cookie,
                timeout=self.timeout,
                client=self.http,
                direct=self._direct(),
            )
        return self.get_slice(path, slice_, as_blosc2=False)

    def get_slice(
        self,
        path: str | os.PathLike,
        key: Any = None,
        as_blosc2: bool = True,
        field: str | None = None,
    ) -> Any:
        """Fetch a slice (or a filter if ``key`` is a string, or a ``field``).

        Returns a Blosc2 NDArray/SChunk, or NumPy/``bytes`` when not ``as_blosc2``.
        """
        params: dict[str, Any] = {}
        if field is not None:
            params["field"] = field
        if isinstance(key, str):
            params["filter"] = key
        elif (indices := encode_indices(key)) is not None:
            params["indices"] = indices  # gathered by the server: one round trip
        else:
            slice_ = api_utils.slice_to_string(key)
            if slice_:
                params["slice_"] = slice_
        return api_utils.fetch_data(
            _as_path(path),
            self.urlbase,
            params,
            auth_cookie=self.cookie,
            as_blosc2=as_blosc2,
            timeout=self.timeout,
            client=self.http,
            direct=self._direct(),
        )

    def get_chunk(self, path: str | os.PathLike, nchunk: int) -> bytes:
        """Return the ``nchunk``-th chunk of ``path``, compressed as stored."""
        response = api_utils.get(
            self._url("chunk", _as_path(path)),
            params={"nchunk": nchunk},
            timeout=self.timeout,
            auth_cookie=self.cookie,
            return_response=True,
            client=self.http,
        )
        return response.content

    def download(
        self,
        dataset: str | os.PathLike,
        localpath: str | os.PathLike | None = None,
        progress: Progress | None = None,
    ) -> pathlib.Path:
        """Download a whole dataset; return the local path written.

        Default target is ``./<dataset path>``; an existing directory receives
        ``<dir>/<name>``; regular files come back decompressed.
        """
        dataset = _as_path(dataset)
        if localpath is None:
            target = pathlib.Path(dataset)
        elif pathlib.Path(localpath).is_dir():
            target = pathlib.Path(localpath) / pathlib.PurePosixPath(dataset).name
        else:
            target = pathlib.Path(localpath)
        # A whole fetch of a table answers its rows as a frame; the file is a download.
        verb = "download" if dataset.endswith(".b2z") else "fetch"
        return api_utils.download_url(
            self._url(verb, dataset),
            target,
            auth_cookie=self.cookie,
            timeout=self._transfer_timeout(),
            client=self.http,
            progress=progress,
            direct=self._direct(),
        )

    # --- writing ----------------------------------------------------------

    def load_from_url(self, url: str, dataset: str | os.PathLike) -> Group | File | Dataset:
        """Have the server fetch ``url`` (http/https) into ``dataset`` (a folder: the URL's name).

        The server refuses private and loopback addresses unless configured to
        allow them, and content bigger than its limit or the quota.
        """
        stored = api_utils.post(
            self._url("load_from_url", _as_path(dataset)),
            data={"remote_url": url},
            auth_cookie=self.cookie,
            timeout=self._transfer_timeout(),
            client=self.http,
        )
        return self.get(stored)

    def upload(
        self,
        localpath: str | os.PathLike,
        dataset: str | os.PathLike,
        progress: Progress | None = None,
    ) -> pathlib.PurePosixPath:
        """Upload a local file (streamed) to ``dataset``; return the stored path."""
        result = uploads.upload_file(
            localpath,
            _as_path(dataset),
            self.urlbase,
            auth_cookie=self.cookie,
            timeout=self._transfer_timeout(),
            client=self.http,
            progress=progress,
        )
        return pathlib.PurePosixPath(result)

    def append(self, remotepath: str | os.PathLike, data: Any, dtype: Any = None) -> tuple:
        """Append ``data`` along the first axis of an array; return its new shape."""
        if not isinstance(data, blosc2.NDArray):
            data = blosc2.asarray(np.asarray(data, dtype=dtype))
        files = {"file": ("append.b2nd", data.to_cframe(), "application/octet-stream")}
        result = self._post(self._url("append", _as_path(remotepath)), files=files)
        return tuple(result)

    def unfold(self, remotepath: str | os.PathLike) -> pathlib.PurePosixPath:
        """Unfold an HDF5 file into a directory of datasets; return its stem."""
        return pathlib.PurePosixPath(self._post(self._url("unfold", _as_path(remotepath))))

    def remove(self, path: str | os.PathLike) -> pathlib.PurePosixPath:
        """Remove a dataset or a whole directory; return the removed path."""
        return pathlib.PurePosixPath(self._post(self._url("remove", _as_path(path))))

    def move(self, src: str | os.PathLike, dst: str | os.PathLike) -> pathlib.PurePosixPath:
        """Move ``src`` to ``dst``; return the new path."""
        body = {"src": str(src), "dst": str(dst)}
        return pathlib.PurePosixPath(self._post(self._url("move") + "/", body))

    def copy(self, src: str | os.PathLike, dst: str | os.PathLike) -> pathlib.PurePosixPath:
        """Copy ``src`` to ``dst``; return the new path."""
        body = {"src": str(src), "dst": str(dst)}
        return pathlib.PurePosixPath(self._post(self._url("copy") + "/", body))

    def concatenate(
        self, srcs: Sequence[str | os.PathLike], dst: str | os.PathLike, axis: int = 0
    ) -> pathlib.PurePosixPath:
        """Concatenate arrays along ``axis`` into ``dst``; return its path."""
        body = {"srcs": [str(s) for s in srcs], "dst": str(dst), "axis": int(axis)}
        return pathlib.PurePosixPath(self._post(self._url("concat") + "/", body))

    def stack(
        self, srcs: Sequence[str | os.PathLike], dst: str | os.PathLike, axis: int = 0
    ) -> pathlib.PurePosixPath:
        """Stack arrays along a new ``axis`` into ``dst``; return its path."""
        body = {"srcs": [str(s) for s in srcs], "dst": str(dst), "axis": int(axis)}
        return pathlib.PurePosixPath(self._post(self._url("stack") + "/", body))

    def lazyexpr(
        self,
        name: str,
        expression: str,
        operands: dict[str, Any] | None = None,
        compute: bool = False,
    ) -> pathlib.PurePosixPath:
        """Create ``@personal/<name>.b2nd`` from an expression; return its path."""
        body = {
            "name": name,
            "expression": expression,
            "operands": {k: str(v) for k, v in (operands or {}).items()},
            "compute": bool(compute),
        }
        return pathlib.PurePosixPath(self._post(self._url("lazyexpr") + "/", body))

    # --- users ------------------------------------------------------------

    def adduser(self, newuser: str, password: str | None = None, superuser: bool = False) -> str:
        """Create a user (superusers only); return the server's message."""
        body = {"username": newuser, "password": password, "superuser": bool(superuser)}
        return self._post(self._url("adduser") + "/", body)

    def deluser(self, user: str) -> str:
        """Delete a user (superusers only); return the server's message."""
        return self._get(self._url("deluser", user))

    def listusers(self, username: str | None = None) -> list[dict]:
        """List users, or only ``username``."""
        params = {"username": username} if username else None
        return self._get(self._url("listusers") + "/", params=params)


class Root:
    """A root (``@public``, ``@personal``, ``@shared`` or a published one)."""

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name

    @property
    def urlbase(self) -> str:
        """Base URL of the server."""
        return self.client.urlbase

    @property
    def cookie(self) -> str | None:
        """Auth cookie of the client."""
        return self.client.cookie

    @property
    def file_list(self) -> list[str]:
        """Paths (relative to the root) of every dataset in it."""
        return self.client.get_list(self.name)

    def __repr__(self) -> str:
        return f"<Root: {self.name}>"

    def __str__(self) -> str:
        return self.name

    def __getitem__(self, path: str | os.PathLike) -> Group | File | Dataset:
        """The dataset, file, table (a CTable ``.b2z``) or group (a container or a group
        inside one) at ``path``."""
        path = _as_path(path)
        if path.endswith((".b2nd", ".b2frame")):
            return Dataset(self, path)
        # No reliable suffix (a leaf inside a container has none): the server's
        # metadata tells the kind, as upstream's client reads it.
        meta = self.client.get_info(f"{self.name}/{path}")
        if meta.get("kind") == "group":
            return Group(self, path, meta)
        if meta.get("kind") == "ctable":
            from caterva2.tables import Table  # a `File`: imported once this module is

            return Table(self, path, meta)
        if "shape" in meta:
            return Dataset(self, path, meta)
        return File(self, path, meta)

    def __contains__(self, path: object) -> bool:
        return str(path) in self.file_list

    def __iter__(self) -> Iterator[str]:
        return iter(self.file_list)

    def __len__(self) -> int:
        return len(self.file_list)

    def load_from_url(
        self, url: str, remotepath: str | os.PathLike | None = None
    ) -> Group | File | Dataset:
        """Have the server fetch ``url`` into this root (at ``remotepath``, else under its name)."""
        target = f"{self.name}/{_as_path(remotepath)}" if remotepath else self.name
        return self.client.load_from_url(url, target)

    def upload(
        self,
        localpath: str | os.PathLike,
        remotepath: str | os.PathLike | None = None,
        progress: Progress | None = None,
    ) -> File | Dataset:
        """Upload a file into this root; return the new `File`/`Dataset`.

        Without ``remotepath`` the (relative) local path is kept in the root.
        """
        if remotepath is None:
            if pathlib.Path(localpath).is_absolute():
                raise ValueError("localpath must be relative when remotepath is not given")
            remotepath = pathlib.PurePath(localpath).as_posix()
        stored = self.client.upload(localpath, f"{self.name}/{remotepath}", progress=progress)
        return self[stored.relative_to(self.name).as_posix()]


class File(RootEntry):
    """A file in a root; its metadata is fetched on creation unless given."""

    label = "File"

    @property
    def urlbase(self) -> str:
        """Base URL of the server."""
        return self.root.urlbase

    @property
    def cookie(self) -> str | None:
        """Auth cookie of the client."""
        return self.root.cookie

    @functools.cached_property
    def vlmeta(self) -> dict:
        """User attributes (variable-length metalayers)."""
        schunk = self.meta.get("schunk")
        if isinstance(schunk, dict):
            return schunk.get("vlmeta", {})
        return self.meta.get("vlmeta", {})

    def get_download_url(self) -> str:
        """Return the URL that fetches the whole file."""
        return api_utils.get_download_url(self.path, self.urlbase)

    def __getitem__(self, key: Any) -> Any:
        """Field or filter (string key, as Blosc2) or slice (as NumPy/bytes)."""
        if isinstance(key, str):
            dtype = str_to_dtype(self.dtype)  # a plain File has no dtype: AttributeError
            if dtype.fields is None:
                raise ValueError("Filters and fields need a structured dtype")
            if key in dtype.fields:
                return self.client.get_slice(self.path, as_blosc2=True, field=key)
            return self.client.get_slice(self.path, key, as_blosc2=True)
        return self.slice(key, as_blosc2=False)

    def _key(self, key: Any) -> Any:
        # Expand an Ellipsis here, where the number of dimensions is known.
        shape = self.meta.get("shape")
        # `is`, not `in`: an array in the key would be compared element by element.
        has_ellipsis = key is Ellipsis or (
            isinstance(key, tuple) and any(item is Ellipsis for item in key)
        )
        if shape is None or not has_ellipsis:
            return key
        items = key if isinstance(key, tuple) else (key,)
        pos = items.index(Ellipsis)
        fill = max(len(shape) - (len(items) - 1), 0)
        return items[:pos] + (slice(None),) * fill + items[pos + 1 :]

    def slice(self, key: Any, as_blosc2: bool = True) -> Any:
        """Fetch a slice as a Blosc2 NDArray/SChunk (or NumPy/``bytes``)."""
        return self.client.get_slice(self.path, self._key(key), as_blosc2=as_blosc2)

    def download(
        self, localpath: str | os.PathLike | None = None, progress: Progress | None = None
    ) -> pathlib.Path:
        """Download the whole file; return the local path written."""
        return self.client.download(self.path, localpath, progress=progress)

    def unfold(self) -> pathlib.PurePosixPath:
        """Unfold this HDF5 file into a directory of datasets."""
        return self.client.unfold(self.path)

    def move(self, dst: str | os.PathLike) -> pathlib.PurePosixPath:
        """Move this file to ``dst``."""
        return self.client.move(self.path, dst)

    def copy(self, dst: str | os.PathLike) -> pathlib.PurePosixPath:
        """Copy this file to ``dst``."""
        return self.client.copy(self.path, dst)

    def concatenate(
        self, srcs: Sequence[str | os.PathLike], dst: str | os.PathLike, axis: int = 0
    ) -> pathlib.PurePosixPath:
        """Concatenate this array and ``srcs`` along ``axis`` into ``dst``."""
        return self.client.concatenate([self.path, *srcs], dst, axis)

    def stack(
        self, srcs: Sequence[str | os.PathLike], dst: str | os.PathLike, axis: int = 0
    ) -> pathlib.PurePosixPath:
        """Stack this array and ``srcs`` along a new ``axis`` into ``dst``."""
        return self.client.stack([self.path, *srcs], dst, axis)

    def remove(self) -> pathlib.PurePosixPath:
        """Remove this file."""
        return self.client.remove(self.path)


class Dataset(ArrayIngestion, File):
    """A Blosc2 dataset (``.b2nd`` array or ``.b2frame`` byte stream)."""

    label = "Dataset"

    def _meta_tuple(self, key: str) -> tuple:
        try:
            return tuple(self.meta[key])
        except KeyError:
            raise AttributeError(f"{self.path} has no {key}") from None

    @property
    def dtype(self) -> str:
        """Data type, as the server spells it (NumPy's ``str(dtype)``)."""
        try:
            return self.meta["dtype"]
        except KeyError:
            raise AttributeError(f"{self.path} has no dtype") from None

    @property
    def shape(self) -> tuple:
        """Shape of the array."""
        return self._meta_tuple("shape")

    @property
    def chunks(self) -> tuple:
        """Chunk shape of the array."""
        return self._meta_tuple("chunks")

    @property
    def blocks(self) -> tuple:
        """Block shape of the array."""
        return self._meta_tuple("blocks")

    def append(self, data: Any) -> tuple:
        """Append ``data`` along the first axis; return the new shape."""
        dtype = None
        if not isinstance(data, (np.ndarray, blosc2.NDArray)) and "dtype" in self.meta:
            # Lists of records only make sense in the dataset's own dtype.
            dtype = str_to_dtype(self.meta["dtype"])
        return self.client.append(self.path, data, dtype=dtype)
