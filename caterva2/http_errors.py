"""The client's errors: what the server answered, carried in the exception itself.

Every error answer becomes an `APIError`, a subclass of `httpx.HTTPStatusError`
(so code that catches that, as before, still does), whose ``str()`` says the
status, the request and the server's explanation: ``e.response`` is no longer
the only place to read why.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse

import httpx

from caterva2.common.http_transport import RawResponse

# The fastapi-users codes the reference API answers with, said in words.
_CODES = {
    "LOGIN_BAD_CREDENTIALS": "wrong user name or password",
    "LOGIN_USER_NOT_VERIFIED": "this account is not verified yet",
    "REGISTER_USER_ALREADY_EXISTS": "a user with this name already exists",
    "REGISTER_INVALID_PASSWORD": "the password is not acceptable",
    "RESET_PASSWORD_BAD_TOKEN": "the password reset link is invalid or expired",
    "RESET_PASSWORD_INVALID_PASSWORD": "the new password is not acceptable",
}


def _words(detail: object) -> str:
    """A server explanation as one line of words (codes translated, dicts flattened)."""
    if isinstance(detail, dict):
        code, reason = detail.get("code"), detail.get("reason")
        if isinstance(code, str):
            text = _CODES.get(code, code)
            return f"{text}: {reason}" if reason else text
        return json.dumps(detail)
    if not isinstance(detail, str):
        return json.dumps(detail)
    return _CODES.get(detail, detail)


def server_explanation(response: httpx.Response) -> str:
    """What the server said about an error: its JSON message, or its text, or the reason."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, httpx.ResponseNotRead):
        body = None
    if isinstance(body, dict):
        for key in ("detail", "message", "title", "description"):
            if body.get(key) is not None:
                return _words(body[key])
    text = ""
    with contextlib.suppress(httpx.ResponseNotRead, UnicodeDecodeError):
        text = " ".join(response.text.split())
    return text[:500] or response.reason_phrase or f"HTTP {response.status_code}"


def logical_path(url: httpx.URL) -> str:
    """The dataset path a URL names (``/api/<verb>/<path>``), else the URL's own path."""
    path = urllib.parse.unquote(url.path)
    _, sep, rest = path.partition("/api/")
    verb, slash, logical = rest.partition("/")
    return logical if sep and slash and verb and logical else path


class APIError(httpx.HTTPStatusError):
    """An error answer of the server (4xx/5xx).

    Attributes: ``status_code``, ``url`` (the full URL asked), ``path`` (the
    dataset path it names, or the URL's path), ``detail`` (the server's
    explanation in words), plus ``request`` and ``response`` as in httpx.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.url = str(response.request.url)
        self.path = logical_path(response.request.url)
        self.detail = server_explanation(response)
        reason = response.reason_phrase or "Error"
        message = (
            f"{self.status_code} {reason} for {response.request.method} {self.url}: {self.detail}"
        )
        super().__init__(message, request=response.request, response=response)


class BadRequest(APIError):
    """400: the request was refused as malformed or invalid."""


class Unauthorized(APIError):
    """401: a login is needed."""


class Forbidden(APIError):
    """403: logged in, but not allowed."""


class NotFound(APIError):
    """404: no such path (or route)."""


class ServerError(APIError):
    """5xx: the server failed (or a publisher behind it is unreachable)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
}


def raise_for_status(response: httpx.Response) -> None:
    """Raise the `APIError` subclass that fits any answer but a 2xx (read a streamed one first)."""
    if response.is_success:
        return
    cls = _BY_STATUS.get(response.status_code)
    if cls is None:
        cls = ServerError if response.status_code >= 500 else APIError
    raise cls(response)


def raise_for_raw_status(raw: RawResponse, body: bytes | bytearray, url: str) -> None:
    """`raise_for_status` for an answer read straight off the connection."""
    if 200 <= raw.status < 300:
        return
    response = httpx.Response(
        raw.status,
        headers=raw.raw_headers(),
        content=bytes(body),
        request=httpx.Request("GET", url),
        extensions={"reason_phrase": raw.reason.encode("latin-1", "replace")},
    )
    raise_for_status(response)


def error_detail(exc: httpx.HTTPStatusError) -> str:
    """The server's explanation of an HTTP error (any, not only an `APIError`)."""
    if isinstance(exc, APIError):
        return exc.detail
    return server_explanation(exc.response)
