"""Low-level helpers of the client: slices, login, requests, transfers.

The errors they raise, and how an error answer is read, are `http_errors`'s.

Every request helper takes an optional ``client`` (an ``httpx.Client``); the
`Client` class passes its persistent one so all calls share one keep-alive
connection, while standalone use gets a one-off client per call.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import blosc2
import httpx
import numpy as np

from caterva2.common import block_stream, slices
from caterva2.common.errors import BadRequest
from caterva2.common.http_transport import RawResponse, Transport
from caterva2.http_errors import (  # `error_detail` stays importable from here, as before
    error_detail,  # noqa: F401
    raise_for_raw_status,
    raise_for_status,
)

# A progress callback receives (bytes done so far, total bytes or None).
Progress = Callable[[int, int | None], None]

# Bytes per read when streaming transfers: big enough to keep the wire busy,
# small enough to keep memory flat.
CHUNK_SIZE = 1 << 20
# The buffer of direct downloads (see `Transport.get`): fewer, bigger writes.
DIRECT_BLOCK = 4 << 20

# Characters kept literal in URL paths: everything a logical path may carry
# (`@`, `!`, ...) except what would end or corrupt the path (`?`, `#`, `%`).
_PATH_SAFE = "/@!$&'()*+,;=:-._~"

# Small array results come as NumPy's .npy when asked for: cheaper than a Blosc2
# frame at both ends. Servers that do not know it (upstream ones) send frames anyway.
NPY_TYPE = "application/x-npy"
ACCEPT_NPY = f"{NPY_TYPE}, application/octet-stream;q=0.9"
# Read straight off the connection, big selections can also come as their stored
# blocks (`common.block_stream`), decompressed here while the rest arrives.
ACCEPT_BLOCKS = f"{block_stream.MEDIA_TYPE}, {ACCEPT_NPY}"
# Longer queries go in a POST body (servers and proxies cap request lines at 8 KiB or so).
MAX_QUERY = 4000


def quote_path(path: str | os.PathLike) -> str:
    """Percent-encode a logical path for use in a URL."""
    return urllib.parse.quote(str(path), safe=_PATH_SAFE)


def api_url(urlbase: str, verb: str, path: str | os.PathLike | None = None) -> str:
    """Build ``<urlbase>/api/<verb>/<path>``."""
    url = f"{urlbase.rstrip('/')}/api/{verb}"
    return f"{url}/{quote_path(path)}" if path is not None else url


# --- slices ---------------------------------------------------------------


def _slice_item(item: Any) -> str:
    # bool is an int subclass but never a sensible index.
    if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
        return str(int(item))
    if isinstance(item, slice):
        if item.step not in (None, 1):
            raise IndexError("Only step=1 is supported")
        start = "" if item.start is None else str(int(item.start))
        stop = "" if item.stop is None else str(int(item.stop))
        return f"{start}:{stop}"
    raise IndexError(f"Unsupported index item: {item!r}")


def _is_full_slice(key: Any) -> bool:
    return isinstance(key, slice) and key.start is None and key.stop is None and key.step is None


def slice_to_string(key: Any, ndim: int | None = None) -> str:
    """Encode an index (int, slice or tuple of them) as the ``slice_`` parameter.

    ``None``, ``()`` and ``slice(None)`` mean the whole dataset (empty string).
    An Ellipsis is expanded when ``ndim`` is known, and dropped at the end.
    """
    # Type checks first: comparing a NumPy scalar with () would broadcast.
    if key is None or (isinstance(key, tuple) and not key) or _is_full_slice(key):
        return ""
    items = list(key) if isinstance(key, tuple) else [key]
    nell = sum(1 for it in items if it is Ellipsis)
    if nell > 1:
        raise IndexError("An index can only have a single ellipsis ('...')")
    if nell:
        pos = items.index(Ellipsis)
        if ndim is not None:
            fill = max(ndim - (len(items) - 1), 0)
            items[pos : pos + 1] = [slice(None)] * fill
        elif pos == len(items) - 1:
            items.pop()
        else:
            raise IndexError("An ellipsis needs the number of dimensions")
    return ", ".join(_slice_item(it) for it in items)


def parse_slice(string: str | None) -> int | slice | tuple | None:
    """Parse slice text such as ``"1, 2:4"`` into an index; ``None`` if empty.

    The servers' grammar (`common.slices`), with `ValueError` for bad text.
    """
    try:
        return slices.parse_slice(string)
    except BadRequest as exc:
        raise ValueError(exc.detail) from None


# --- requests -------------------------------------------------------------


@contextlib.contextmanager
def _use_client(client: httpx.Client | None) -> Iterator[httpx.Client]:
    """Yield the given client, or a one-off client closed afterwards."""
    if client is not None:
        yield client
        return
    with httpx.Client(follow_redirects=False) as one_off:
        yield one_off


def auth_headers(auth_cookie: str | None) -> dict[str, str]:
    """The headers that carry the login cookie, if any."""
    return {"Cookie": auth_cookie} if auth_cookie else {}


def _timeout_error(exc: httpx.TimeoutException, timeout: Any, url: Any) -> TimeoutError:
    return TimeoutError(f"Timeout after {timeout} seconds while trying to access {url}")


def request(
    method: str,
    url: str,
    *,
    auth_cookie: str | None = None,
    timeout: float | httpx.Timeout = 5,
    client: httpx.Client | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request; raise `http_errors.APIError` on 4xx/5xx, ``TimeoutError`` on timeouts."""
    headers = {**auth_headers(auth_cookie), **kwargs.pop("headers", {})}
    with _use_client(client) as http:
        try:
            response = http.request(method, url, headers=headers, timeout=timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, timeout, url) from exc
    raise_for_status(response)
    return response


def get(
    url: str,
    params: dict | None = None,
    headers: dict | None = None,
    timeout: float = 5,
    auth_cookie: str | None = None,
    return_response: bool = False,
    client: httpx.Client | None = None,
) -> Any:
    """GET ``url`` and return the decoded JSON (or the response itself)."""
    response = request(
        "GET",
        url,
        params=params,
        headers=headers or {},
        timeout=timeout,
        auth_cookie=auth_cookie,
        client=client,
    )
    return response if return_response else response.json()


def post(
    url: str,
    json: Any = None,
    auth_cookie: str | None = None,
    timeout: float = 5,
    client: httpx.Client | None = None,
    **kwargs: Any,
) -> Any:
    """POST ``json`` (or other httpx content) to ``url`` and return the decoded JSON."""
    response = request(
        "POST", url, json=json, timeout=timeout, auth_cookie=auth_cookie, client=client, **kwargs
    )
    return response.json()


def get_auth_cookie(
    urlbase: str, user_auth: Any, timeout: float = 5, client: httpx.Client | None = None
) -> str:
    """Log in and return the auth cookie as ``name=value``.

    ``user_auth`` is a ``(username, password)`` pair, a `BasicAuth`, or a dict
    with ``username`` and ``password`` keys.
    """
    if isinstance(user_auth, dict):
        username, password = user_auth["username"], user_auth["password"]
    elif hasattr(user_auth, "username") and hasattr(user_auth, "password"):
        username, password = user_auth.username, user_auth.password
    else:
        username, password = user_auth
    url = f"{urlbase.rstrip('/')}/auth/jwt/login"
    response = request(
        "POST",
        url,
        data={"username": username, "password": password},
        timeout=timeout,
        client=client,
    )
    # Read the header itself: the cookie jar would drop cookies for some hosts.
    set_cookies = response.headers.get_list("set-cookie")
    if not set_cookies:
        raise httpx.HTTPError(f"Login at {url} returned no cookie")
    return set_cookies[0].split(";", 1)[0].strip()


# --- data -----------------------------------------------------------------


def decode_frame(data: bytes, copy: bool = True) -> blosc2.NDArray | blosc2.SChunk:
    """Turn a Blosc2 cframe into an NDArray, or into an SChunk if it is not one.

    Without `copy` the result reads `data` in place: keep `data` alive as long.
    """
    try:
        return blosc2.ndarray_from_cframe(data, copy)
    except RuntimeError:
        return blosc2.schunk_from_cframe(data, copy)


def to_plain(obj: blosc2.NDArray | blosc2.SChunk) -> np.ndarray | bytes:
    """Turn a decoded frame into NumPy (arrays) or ``bytes`` (byte streams)."""
    if isinstance(obj, blosc2.SChunk):
        return obj[:]
    return obj[()] if obj.ndim == 0 else obj[:]


def _media_type(response: httpx.Response | RawResponse) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_npy(response: httpx.Response | RawResponse) -> bool:
    """Whether a fetch answer is NumPy's .npy rather than a Blosc2 frame."""
    return _media_type(response) == NPY_TYPE


_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}


def decode_npy(data: bytes | bytearray) -> np.ndarray:
    """A .npy body as a writable NumPy array (0-d arrays stay arrays, as `to_plain` gives).

    A `bytearray` body is used in place (no copy); `bytes` are copied, being read-only.
    """
    view = memoryview(data)
    version = tuple(view[6:8]) if view[:6] == b"\x93NUMPY" else None
    if not isinstance(data, bytearray) or version not in ((1, 0), (2, 0)):
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    size_len = 2 if version == (1, 0) else 4
    start = 8 + size_len + int.from_bytes(view[8 : 8 + size_len], "little")
    header = bytes(view[:start])
    parsed = _NPY_HEADERS.get(header)
    if parsed is None:
        # Parsing evaluates a Python literal (~0.1 ms); slices of one dataset repeat it.
        head = io.BytesIO(header)
        np.lib.format.read_magic(head)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        parsed = read(head)
        if len(_NPY_HEADERS) >= 256:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[header] = parsed
    shape, fortran, dtype = parsed
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    count = int(np.prod(shape, dtype=np.int64))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _query_url(url: str, params: dict | None) -> str:
    """`url` with `params` as its query, encoded as httpx would."""
    return f"{url}?{urllib.parse.urlencode(params)}" if params else url


def _fetch_direct(
    direct: Transport,
    url: str,
    params: dict,
    headers: dict[str, str],
    as_blosc2: bool,
    timeout: Any,
) -> Any:
    """`fetch_data` through `Transport.get`: the body read into one buffer, used in place."""
    full = _query_url(url, params)
    try:
        raw = direct.get(full, headers, timeout)
        try:
            if raw.status == 200 and _media_type(raw) == block_stream.MEDIA_TYPE:
                array = block_stream.read(raw)
                if raw.readinto(bytearray(1)):  # also reads the end of a chunked body
                    raise httpx.RemoteProtocolError("Unexpected data after a block stream")
                return blosc2.asarray(array) if as_blosc2 else array
            body = raw.read_all()
        finally:
            raw.close()
    except httpx.TimeoutException as exc:
        raise _timeout_error(exc, timeout, url) from exc
    raise_for_raw_status(raw, body, full)
    if is_npy(raw):
        array = decode_npy(body)
        return blosc2.asarray(array) if as_blosc2 else array
    if as_blosc2:
        return decode_frame(body)
    obj = decode_frame(body, copy=False)  # decompressed below, while `body` lives
    plain = to_plain(obj)
    del obj
    return plain


def fetch_data(
    path: str,
    urlbase: str,
    params: dict | None = None,
    auth_cookie: str | None = None,
    as_blosc2: bool = False,
    timeout: float = 5,
    client: httpx.Client | None = None,
    direct: Transport | None = None,
) -> Any:
    """GET ``/api/fetch/<path>`` (POST if the query is long) and decode what it returns.

    With ``direct`` (the transport of ``client``) the request skips the httpx layers.
    """
    params = {k: v for k, v in (params or {}).items() if v is not None}
    # NumPy wanted: offer .npy, which the server uses for small arrays.
    headers = {} if as_blosc2 else {"Accept": ACCEPT_NPY}
    url = api_url(urlbase, "fetch", path)
    long_query = len(urllib.parse.urlencode(params)) > MAX_QUERY
    if direct is not None and not long_query:
        sent = {**auth_headers(auth_cookie), **headers}
        if not as_blosc2:
            sent["Accept"] = ACCEPT_BLOCKS
        return _fetch_direct(direct, url, params, sent, as_blosc2, timeout)
    # Coordinates too many for a URL go as the same parameters in a POST body.
    response = request(
        "POST" if long_query else "GET",
        url,
        headers=headers,
        timeout=timeout,
        auth_cookie=auth_cookie,
        client=client,
        **({"json": params} if long_query else {"params": params}),
    )
    if is_npy(response):
        array = decode_npy(response.content)
        return blosc2.asarray(array) if as_blosc2 else array
    obj = decode_frame(response.content)
    return obj if as_blosc2 else to_plain(obj)


# --- transfers ------------------------------------------------------------


def _attachment_name(response: httpx.Response | RawResponse) -> str | None:
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r'filename="([^"]*)"', disposition) or re.search(
        r"filename=([^;\s]+)", disposition
    )
    return match.group(1) if match else None


def _decompress_b2(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Decompress an SChunk frame file into raw bytes, one chunk at a time."""
    schunk = blosc2.open(str(src), mode="r")
    with open(dst, "wb") as out:
        for nchunk in range(schunk.nchunks):
            out.write(schunk.decompress_chunk(nchunk))


def download_url(
    url: str,
    localpath: str | os.PathLike,
    auth_cookie: str | None = None,
    params: dict | None = None,
    timeout: float | httpx.Timeout = 5,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
    direct: Transport | None = None,
) -> pathlib.Path:
    """Stream ``url`` into ``localpath``; ``.b2`` attachments are decompressed.

    Returns the path written. A failed transfer leaves no partial file behind.
    With ``direct`` (the transport of ``client``) the request skips the httpx layers.
    """
    localpath = pathlib.Path(localpath)
    localpath.parent.mkdir(parents=True, exist_ok=True)
    if direct is not None:
        target = _download_direct(direct, url, localpath, auth_cookie, params, timeout, progress)
        compressed = target != localpath
    else:
        target, compressed = _download_httpx(
            url, localpath, auth_cookie, params, timeout, client, progress
        )
    if compressed:
        try:
            _decompress_b2(target, localpath)
        except BaseException:
            localpath.unlink(missing_ok=True)
            raise
        finally:
            target.unlink(missing_ok=True)
    return localpath


def _download_httpx(
    url: str,
    localpath: pathlib.Path,
    auth_cookie: str | None,
    params: dict | None,
    timeout: float | httpx.Timeout,
    client: httpx.Client | None,
    progress: Progress | None,
) -> tuple[pathlib.Path, bool]:
    """Stream the body through httpx into the file it goes to: (that file, compressed?)."""
    with _use_client(client) as http:
        try:
            with http.stream(
                "GET", url, params=params, headers=auth_headers(auth_cookie), timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()  # so the error detail can be shown
                raise_for_status(response)
                compressed = (_attachment_name(response) or "").endswith(".b2")
                target = localpath.with_name(localpath.name + ".b2") if compressed else localpath
                total = response.headers.get("content-length")
                _stream_to_file(response, target, int(total) if total else None, progress)
        except httpx.TimeoutException as exc:
            raise _timeout_error(exc, timeout, url) from exc
    return target, compressed


def _download_direct(
    direct: Transport,
    url: str,
    localpath: pathlib.Path,
    auth_cookie: str | None,
    params: dict | None,
    timeout: float | httpx.Timeout,
    progress: Progress | None,
) -> pathlib.Path:
    """Stream the body straight into the file it goes to, which is returned."""
    full = _query_url(url, params)
    try:
        raw = direct.get(full, auth_headers(auth_cookie), timeout)
        try:
            if not 200 <= raw.status < 300:
                raise_for_raw_status(raw, raw.read_all(), full)
            compressed = (_attachment_name(raw) or "").endswith(".b2")
            target = localpath.with_name(localpath.name + ".b2") if compressed else localpath
            _read_to_file(raw, target, progress)
        finally:
            raw.close()  # a body not read whole drops its connection
    except httpx.TimeoutException as exc:
        raise _timeout_error(exc, timeout, url) from exc
    return target


def _read_to_file(raw: RawResponse, target: pathlib.Path, progress: Progress | None) -> None:
    """Copy a body to `target` through one buffer, in big writes."""
    buffer = bytearray(DIRECT_BLOCK)
    view = memoryview(buffer)
    done = 0
    try:
        with open(target, "wb") as out:  # writes this big bypass the buffer
            while n := raw.readinto(view):
                out.write(view[:n])
                done += n
                if progress is not None:
                    progress(done, raw.length)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _stream_to_file(
    response: httpx.Response, target: pathlib.Path, total: int | None, progress: Progress | None
) -> None:
    done = 0
    try:
        with open(target, "wb") as out:
            for data in response.iter_bytes(CHUNK_SIZE):
                out.write(data)
                done += len(data)
                if progress is not None:
                    progress(done, total)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def get_download_url(path: str | os.PathLike, urlbase: str) -> str:
    """Return the URL that fetches the whole dataset at ``path``."""
    return api_url(urlbase, "fetch", path)
