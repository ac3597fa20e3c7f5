"""Refuse state-changing requests that a browser sent on behalf of another site (CSRF).

A browser says where a request comes from: `Sec-Fetch-Site` (Fetch Metadata,
every current browser), `Origin` (on every POST, and on cross-site fetches) and
`Referer` (unless a policy strips it). The first one present decides. Programs
(the Python client, `cat2cli`, curl) send none of them and are let through: a
cross-site attacker cannot make a browser drop all three.

"Same site" is not enough: a page on another port of the same host is another
origin, and it is refused.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import falcon

from ..common.errors import Forbidden

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# `none`: typed in the address bar or opened from a bookmark, never from another page.
TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL or an `Origin` value; None when it names no origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def cross_origin_reason(req: falcon.Request, urlbase: str) -> str | None:
    """Why `req` looks sent by another site's page, or None when it is ours or a program's."""
    site = req.get_header("Sec-Fetch-Site")
    if site:
        if site.strip().lower() in TRUSTED_FETCH_SITES:
            return None
        return f"Sec-Fetch-Site is {site!r}"
    ours = {origin_of(urlbase), origin_of(f"{req.scheme}://{req.netloc}")}
    ours.discard(None)
    origin = req.get_header("Origin")
    if origin:
        # `null` comes from sandboxed frames, data: URLs and privacy-redirected forms.
        return None if origin_of(origin) in ours else f"Origin is {origin!r}"
    referer = req.get_header("Referer")
    if referer:
        return None if origin_of(referer) in ours else "Referer is another site"
    return None


def changes_state(req: falcon.Request, resource: object) -> bool:
    """Whether the request may change something: unsafe methods, and GET routes that do."""
    if req.method not in SAFE_METHODS:
        return True
    return req.method == "GET" and bool(getattr(resource, "changes_state_on_get", False))


class OriginGuard:
    """Falcon middleware: 403 for a state-changing request sent by another site's page."""

    def __init__(self, urlbase: str) -> None:
        self.urlbase = urlbase

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: object, params: dict
    ) -> None:
        if resource is None or getattr(resource, "checks_origin_itself", False):
            return
        if not changes_state(req, resource):
            return
        reason = cross_origin_reason(req, self.urlbase)
        if reason is not None:
            raise Forbidden(
                f"Refused: this request was sent by another site's page ({reason}). "
                "Use this subscriber's own pages, or a program without browser headers."
            )
