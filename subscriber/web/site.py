"""The web GUI's shared parts: the `Web` state, page helpers, error pages and the `Page` base."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import falcon
import jinja2

from ...common.errors import BadRequest, Caterva2Error, Forbidden
from ...common.paths import join_logical, split_logical_path
from ..auth import COOKIE_NAME, clear_login_cookie
from ..file_ops import FileOps
from ..login_throttle import ThrottledLogins
from ..origin_check import cross_origin_reason
from ..root_registry import RootRegistry
from ..settings import SubscriberSettings
from ..store import Store, User
from . import views
from .access import Access
from .commands import Commands, friendly

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
FLASH_COOKIE = "c2flash"
FRAGMENT_HEADER = "X-C2-Fragment"
MAX_LISTED = 1000  # entries of a path list before "refine your search"
POLL_MS = 2000  # how often pages ask whether what they show has changed
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
TITLES = {
    400: "Cannot do that",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported",
    422: "Incomplete request",
    429: "Too many attempts",
    503: "Publisher unavailable",
}


def parent_of(path: str) -> str:
    """The folder holding a logical path (a root is its own parent)."""
    root, rel = split_logical_path(path)
    return join_logical(root, rel.rpartition("/")[0])


def crumbs(path: str) -> list[tuple[str, str]]:
    """(label, path) for each step from the root down to `path`."""
    root, rel = split_logical_path(path)
    out = [(root, root)]
    acc = root
    for part in rel.split("/") if rel else []:
        acc = f"{acc}/{part}"
        out.append((part, acc))
    return out


def form_of(req: falcon.Request) -> dict:
    """The fields of a posted web form; 400 for any other body (JSON, multipart...)."""
    if not (req.content_type or "").startswith("application/x-www-form-urlencoded"):
        raise BadRequest(
            "This form must be sent as a web form (application/x-www-form-urlencoded)."
        )
    try:
        form = req.get_media()
    except falcon.MediaNotFoundError:
        return {}
    except falcon.MediaMalformedError as exc:
        raise BadRequest(f"The form could not be read: {exc.description}") from None
    return form if isinstance(form, dict) else {}


def _form_value(form: dict, key: str) -> str:
    value = form.get(key, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value)


def safe_next(value: str | None) -> str:
    """A local path to go back to after logging in (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def asset_version() -> str:
    digest = hashlib.blake2b(digest_size=4)
    for path in sorted(STATIC.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Web:
    """Shared state of the pages: data access, templates, settings."""

    def __init__(
        self,
        store: Store | None,
        registry: RootRegistry,
        ops: FileOps,
        settings: SubscriberSettings,
        logins: ThrottledLogins | None = None,
    ) -> None:
        self.access = Access(registry, ops)
        self.settings = settings
        self.store = store if settings.login else None
        self.secure_cookies = settings.secure_cookies
        self.logins = logins
        if logins is None and self.store is not None:
            self.logins = ThrottledLogins(self.store, settings.throttle_limits)
        self.commands = Commands(self.access, self.store, settings.maxusers)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["size"] = views.human_size
        self.env.filters["u"] = lambda p: quote(str(p), safe="/@!")
        self.env.globals["parent_of"] = parent_of
        self.version = asset_version()

    # Requests

    def user(self, req: falcon.Request) -> User | None:
        return req.context.user

    def expired(self, req: falcon.Request) -> bool:
        """A login cookie came with the request but names no valid session."""
        if self.store is None or req.context.user is not None:
            return False
        return any(v and v != '""' for v in req.get_cookie_values(COOKIE_NAME) or ())

    def here(self, req: falcon.Request) -> str:
        """The page asked for, below the mount point (where to come back after logging in)."""
        return req.path + (f"?{req.query_string}" if req.query_string else "")

    def fragment(self, req: falcon.Request) -> str:
        return req.get_header(FRAGMENT_HEADER) or ""

    def check_origin(self, req: falcon.Request) -> None:
        """Refuse form posts sent by other sites' pages (see `origin_check`)."""
        if cross_origin_reason(req, self.settings.urlbase) is not None:
            raise Forbidden("This form was sent by another site: refused.")

    def flash(self, resp: falcon.Response, message: str, kind: str = "ok") -> None:
        resp.set_cookie(
            FLASH_COOKIE,
            quote(f"{kind}:{message}", safe=""),
            path="/",
            max_age=60,
            http_only=True,
            secure=self.secure_cookies,
            same_site="Lax",
        )

    def redirect(self, req: falcon.Request, resp: falcon.Response, location: str) -> None:
        """303 to a path of this site (after a form post)."""
        resp.status = falcon.HTTP_303
        resp.location = req.root_path + location if location.startswith("/") else location

    def link(self, path: str, **params: Any) -> str:
        """The site-relative URL of a logical path's page."""
        query = {k: v for k, v in params.items() if v not in (None, "")}
        url = "/roots/" + quote(path, safe="/@!")
        return url + ("?" + urlencode(query, doseq=True) if query else "")

    def render(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        template: str,
        status: str = falcon.HTTP_200,
        **ctx: Any,
    ) -> None:
        """Render a page (or, when asked, only its main part) with the common context."""
        flash = None
        raw = None if self.fragment(req) else req.cookies.get(FLASH_COOKIE)
        if raw:
            kind, _, text = unquote(raw).partition(":")
            flash = {"kind": kind, "text": text}
            resp.unset_cookie(FLASH_COOKIE, path="/")
        expired = self.expired(req)
        if expired:
            clear_login_cookie(resp, self.secure_cookies)
        user = self.user(req)
        base = req.root_path
        context = {
            "base": base,
            "static": f"{base}/static",
            "v": self.version,
            "user": user,
            "login": self.store is not None,
            "register": self.store is not None and self.settings.register,
            "flash": flash,
            "expired": expired,
            "fragment": self.fragment(req),
            "here": self.here(req),
            "link": lambda path, **p: base + self.link(path, **p),
            "poll_ms": POLL_MS,
            "watch": None,
            "stamp": "",
            "title": "",
        }
        context.update(ctx)
        resp.status = status
        resp.content_type = "text/html; charset=utf-8"
        resp.text = self.env.get_template(template).render(context)
        self.secure(resp)

    def secure(self, resp: falcon.Response) -> None:
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "same-origin")
        resp.set_header("Cache-Control", "no-cache, private")

    def error(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        status: int,
        message: str,
        path: str | None = None,
    ) -> None:
        """A page that says what went wrong, with a way forward; never a traceback."""
        expired = self.expired(req)
        if status == 401 and expired:
            message = "Your session has expired. Please log in again."
        back = None
        if path and status == 404:
            try:
                back = parent_of(path)
            except BadRequest:
                back = None
        self.render(
            req,
            resp,
            "error.html",
            falcon.code_to_http_status(status),
            title=TITLES.get(status, "Something went wrong"),
            code=status,
            message=message,
            back=back if back and back != path else None,
            next=self.here(req),
        )


def guarded(method):
    """Turn every failure of a page into a readable error page."""

    @functools.wraps(method)
    def wrapper(self, req: falcon.Request, resp: falcon.Response, **params: Any) -> None:
        web: Web = self.web
        path = params.get("path")
        try:
            if req.method == "POST":
                web.check_origin(req)
            method(self, req, resp, **params)
        except falcon.HTTPStatus:
            raise
        except falcon.HTTPError as exc:
            web.error(req, resp, exc.status_code, exc.description or exc.title, path)
        except Caterva2Error as exc:
            status = exc.status
            message = friendly(exc, web.user(req))
            if status == 404 and path and message in ("Not found.", ""):
                message = f"{path} does not exist. It may have been moved or deleted."
            if status == 401 and web.user(req) is None:
                reading = str(exc.detail).startswith("Accessing")
                message = (
                    f"Log in to see {path.split('/', 1)[0]}."
                    if path and reading
                    else "You need to log in to do this."
                )
            web.error(req, resp, status, message, path)
            for name, value in (exc.headers or {}).items():
                resp.set_header(name, value)
        except Exception:
            log.exception("web page %s %s failed", req.method, req.path)
            web.error(
                req,
                resp,
                500,
                "Something went wrong on the server. The error was logged; please try again.",
                path,
            )

    return wrapper


class Page:
    # `guarded` checks the origin of posts itself, to answer with a page (see `OriginGuard`).
    checks_origin_itself = True

    def __init__(self, web: Web) -> None:
        self.web = web


class Favicon(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "image/svg+xml"
        resp.data = (STATIC / "favicon.svg").read_bytes()
        resp.set_header("Cache-Control", "public, max-age=86400")
