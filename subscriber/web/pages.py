"""The web GUI's resources: server-rendered pages, a few fragments, PNG slices and change stamps."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import falcon
import jinja2

from ...common.errors import BadRequest, Caterva2Error, Conflict, Forbidden, NotFound
from ...common.paths import join_logical, split_logical_path, suffix
from .. import mail, passwords
from ..auth import COOKIE_NAME, clear_login_cookie, set_login_cookie
from ..file_ops import FileOps
from ..login_throttle import ThrottledLogins
from ..origin_check import cross_origin_reason
from ..root_registry import RootRegistry
from ..settings import SubscriberSettings
from ..store import EMAIL_RE, Store, User
from . import views
from .access import Access, Node
from .commands import Commands, friendly, resolve

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


# Roots


class HomePage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        user = web.user(req)
        usage = quota = None
        if user is not None:
            usage = web.access.roots.disk_usage()
            quota = web.settings.quota
        web.render(
            req,
            resp,
            "home.html",
            title="Roots",
            entries=web.access.root_entries(user, counts=True),
            usage=usage,
            quota=quota,
            watch="",
            stamp=web.access.roots_stamp(user),
            cwd="",
        )


class SubscribeAction(Page):
    """One-click follow of a remote root (`unsubscribe=True`: stop following it)."""

    def __init__(self, web: Web, unsubscribe: bool = False) -> None:
        super().__init__(web)
        self.unsubscribe = unsubscribe

    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        if not self.unsubscribe:
            self.web.redirect(req, resp, self.web.link(path))
            return
        self.web.render(
            req,
            resp,
            "confirm.html",
            title=f"Stop following {path}",
            question=f"Stop following {path}? Its cached data on this subscriber is dropped.",
            action=f"/web/unsubscribe/{quote(path, safe='@')}",
            button="Stop following",
            fields={},
            cancel="/",
        )

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        root = path.strip("/")
        if self.unsubscribe:
            self.web.access.unfollow(root, self.web.user(req))
            self.web.flash(resp, f"Stopped following {root}.")
            self.web.redirect(req, resp, "/")
        else:
            self.web.access.follow(root, self.web.user(req))
            self.web.flash(resp, f"Now following {root}: its changes show up here by themselves.")
            self.web.redirect(req, resp, self.web.link(root))


# Browsing


class BrowsePage(Page):
    """`/roots/<path>`: a folder with its datasets, or a dataset with its tabs."""

    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        user = web.user(req)
        node = web.access.node(path, user)
        path = node.path
        if node.kind == "unsubscribed":
            web.render(req, resp, "unsubscribed.html", title=node.root, node=node)
            return
        if node.kind == "missing":
            raise NotFound("Not Found")
        folder = node if node.kind in ("root", "dir") else web.access.node(parent_of(path), user)
        q = (req.get_param("q") or "").strip()
        shown = (
            [e for e in folder.entries if q.lower() in e.relpath.lower()] if q else folder.entries
        )
        subdirs = sorted({e.relpath.split("/", 1)[0] for e in folder.entries if "/" in e.relpath})
        ctx: dict[str, Any] = {
            "node": node,
            "folder": folder,
            "q": q,
            "shown": shown[:MAX_LISTED],
            "more": max(0, len(shown) - MAX_LISTED),
            "subdirs": subdirs,
            "crumbs": crumbs(path),
            "writable": web.access.writable(node.root, user),
            "watch": folder.path,
            "stamp": web.access.stamp(folder.path, user),
            "cwd": folder.path,
            "title": path,
        }
        if web.fragment(req) == "paths":
            web.render(req, resp, "_paths.html", **ctx)
            return
        status = falcon.HTTP_200
        if node.kind == "file":
            status = self.dataset(req, node, ctx)
        else:
            ctx["total"] = sum(e.size or 0 for e in folder.entries)
        web.render(req, resp, "browse.html", status, **ctx)

    def dataset(self, req: falcon.Request, node: Node, ctx: dict[str, Any]) -> str:
        """Fill the dataset panel; a bad request of a tab is shown inside it."""
        web = self.web
        user = web.user(req)
        info = web.access.info(node.path, user)
        meta = views.summarize(info, node.path)
        vlmeta = (info.get("schunk") or info).get("vlmeta") if isinstance(info, dict) else None
        spec = views.image_spec(meta, vlmeta)
        tabs = []
        if meta.kind in ("array", "lazy"):
            tabs.append(("data", "Data"))
        if spec is not None:
            tabs.append(("image", "Stack" if spec.stack else "Image"))
        if meta.kind in ("file", "frame"):
            tabs.append(("content", "Content"))
        tabs.append(("info", "Info"))
        names = [t for t, _ in tabs]
        view = req.get_param("view") or ""
        if view not in names:
            view = names[0]
        params = dict(req.params)
        ctx.update(
            info=info,
            meta=meta,
            tabs=tabs,
            view=view,
            spec=spec,
            panel_error=None,
            table=None,
            content=None,
            image=None,
            urlbase=req.prefix,
        )
        try:
            if view == "data":
                ctx["table"] = views.table_view(web.access, node.path, user, meta, params)
            elif view == "image":
                stamp = web.access.stamp(node.path, user)
                ctx["image"] = self.image_ctx(req, node, meta, spec, stamp)
            elif view == "content":
                ctx["content"] = views.content_view(web.access, node.path, user, info)
            status = falcon.HTTP_200
        except Caterva2Error as exc:
            if exc.status in (401, 404):
                raise
            ctx["panel_error"] = friendly(exc, user)
            status = falcon.code_to_http_status(exc.status if exc.status != 500 else 400)
        self.table_form(req, meta, ctx)
        return status

    def table_form(self, req: falcon.Request, meta: views.Meta, ctx: dict[str, Any]) -> None:
        """The fields of the Data tab's forms, as shown or as the user typed them."""
        names = list(meta.dtype.names or ()) if meta.dtype is not None else []
        asked = [f for f in req.get_param_as_list("f") or [] if f in names]
        table = ctx["table"]
        ctx["chosen"] = table.chosen if table else (asked or names[: views.MAX_FIELDS])
        ctx["filter_text"] = req.get_param("filter") or ""
        ctx["sort"] = req.get_param("sort") or ""
        ctx["desc"] = req.get_param("desc") in ("1", "true", "on")
        if table is not None:
            ctx["form_axes"] = [(a.axis, a.size, a.text) for a in table.axes]
        elif meta.shape:
            defaults = views.default_texts(meta.shape, bool(names))
            ctx["form_axes"] = [
                (i, size, req.get_param(f"s{i}") or defaults[i])
                for i, size in enumerate(meta.shape)
            ]
        else:
            ctx["form_axes"] = []

    def image_ctx(self, req, node: Node, meta, spec, stamp: str) -> dict[str, Any]:
        shape = meta.shape
        axis = req.get_param_as_int("axis", default=spec.axes[0][0] if spec.stack else 0)
        if spec.stack and axis not in [a for a, _ in spec.axes]:
            raise BadRequest(
                f"Axis {axis} cannot be browsed: choose one of {[a for a, _ in spec.axes]}"
            )
        size = shape[axis] if spec.stack else 1
        index = req.get_param_as_int("i", default=size // 2 if spec.stack else 0)
        if spec.stack and not 0 <= index < size:
            raise BadRequest(f"Slice {index} is out of range for axis {axis} (size {size})")
        plane = [s for a, s in enumerate(shape) if a != axis] if spec.stack else list(shape)
        return {
            "axis": axis,
            "index": index,
            "size": size,
            "plane": plane[:2],
            "src": f"{req.root_path}/web/image/{quote(node.path, safe='/@!')}",
            "stamp": stamp,
        }


class ImageResource(Page):
    """`/web/image/<path>?axis=&i=`: one picture of an array, as PNG."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        user = web.user(req)
        try:
            info = web.access.info(path, user)
            meta = views.summarize(info, path)
            vlmeta = (info.get("schunk") or info).get("vlmeta")
            spec = views.image_spec(meta, vlmeta)
            if spec is None:
                raise BadRequest(f"{path} cannot be shown as an image")
            axis = req.get_param_as_int("axis", default=0)
            index = req.get_param_as_int("i", default=0)
            data = views.render_png(web.access, path, user, spec, meta.shape, axis, index)
        except Caterva2Error as exc:
            resp.status = falcon.code_to_http_status(exc.status)
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = friendly(exc, user)
            return
        resp.content_type = "image/png"
        resp.data = data
        web.secure(resp)
        # The page puts the dataset's stamp in the URL: a changed dataset gets a new URL.
        resp.set_header(
            "Cache-Control", "private, max-age=3600" if req.get_param("v") else "no-cache"
        )


class ChangesResource(Page):
    """`/web/changes?path=`: the stamp of what a page shows; pages poll it (see README)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        path = req.get_param("path") or ""
        user = web.user(req)
        try:
            stamp = web.access.stamp(path, user) if path else web.access.roots_stamp(user)
        except Caterva2Error as exc:
            stamp = f"error-{exc.status}"
        except Exception:
            log.exception("stamp of %r failed", path)
            stamp = "error-500"
        resp.media = {"stamp": stamp}
        resp.set_header("Cache-Control", "no-store")


# Writes


class UploadAction(Page):
    """`POST /web/upload/<folder>`: files from the picker or dropped on the page."""

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        user = web.user(req)
        web.access.roots.locate(path, user, "Uploading")  # rights before reading the body
        if not (req.content_type or "").startswith("multipart/form-data"):
            raise BadRequest("Choose a file to upload.")
        stored = []
        try:
            for part in req.get_media():
                if part.name == "file" and part.filename:
                    stored.append(
                        web.access.ops.upload(path, part.secure_filename, part.stream, user)
                    )
        except falcon.MediaMalformedError as exc:
            raise BadRequest(f"The upload was incomplete: {exc.description}") from None
        if not stored:
            web.flash(resp, "Choose a file to upload first.", "error")
            web.redirect(req, resp, web.link(path))
            return
        if len(stored) == 1:
            web.flash(resp, f"Uploaded {stored[0]}.")
            web.redirect(req, resp, web.link(stored[0]))
        else:
            web.flash(resp, f"Uploaded {len(stored)} files: " + ", ".join(stored))
            web.redirect(req, resp, web.link(path))


class DeleteAction(Page):
    """`/web/delete/<path>`: asks first, then deletes a dataset or a folder."""

    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        user = web.user(req)
        web.access.roots.locate(path, user, "Removing files")
        node = web.access.node(path, user)
        if node.kind == "missing":
            raise NotFound("Not Found")
        what = (
            f"the folder {path} with its {len(node.entries)} datasets"
            if node.kind in ("dir", "root")
            else path
        )
        web.render(
            req,
            resp,
            "confirm.html",
            title=f"Delete {path}",
            question=f"Delete {what}? This cannot be undone.",
            action=f"/web/delete/{quote(path, safe='/@!')}",
            button="Delete",
            danger=True,
            fields={},
            cancel=web.link(path),
        )

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        removed = web.access.ops.remove(path, web.user(req))
        web.flash(resp, f"Deleted {removed}.")
        web.redirect(req, resp, web.link(parent_of(removed)))


class TransferAction(Page):
    """`/web/transfer/<path>`: move or copy, asking before overwriting."""

    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        web.access.roots.locate(path, web.user(req), "Copying files")
        op = "copy" if req.get_param("op") == "copy" else "move"
        self.form(req, resp, path, op, path if op == "move" else "", None)

    def form(self, req, resp, path: str, op: str, dst: str, error: str | None) -> None:
        self.web.render(
            req,
            resp,
            "transfer.html",
            falcon.HTTP_400 if error else falcon.HTTP_200,
            title=f"{op.title()} {path}",
            path=path,
            op=op,
            dst=dst,
            form_error=error,
            cancel=self.web.link(path),
        )

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        web = self.web
        user = web.user(req)
        form = form_of(req)
        op = "copy" if _form_value(form, "op") == "copy" else "move"
        raw = _form_value(form, "dst").strip()
        if not raw:
            self.form(req, resp, path, op, raw, "Give a destination, like @shared/ or a new name.")
            return
        try:
            dst = resolve(raw, parent_of(path), web.access)
            target = self.landing(path, dst, user)
        except Caterva2Error as exc:
            self.form(req, resp, path, op, raw, friendly(exc, user))
            return
        if target and target != path and _form_value(form, "confirmed") != "1":
            web.render(
                req,
                resp,
                "confirm.html",
                title=f"Overwrite {target}?",
                question=f"{target} already exists. Replace it with {path}?",
                action=f"/web/transfer/{quote(path, safe='/@!')}",
                button=f"Replace ({op})",
                danger=True,
                fields={"op": op, "dst": raw, "confirmed": "1"},
                cancel=web.link(path),
            )
            return
        try:
            result = (
                web.access.ops.move(path, dst, user)
                if op == "move"
                else web.access.ops.copy(path, dst, user)
            )
        except (BadRequest, Conflict) as exc:
            self.form(req, resp, path, op, raw, friendly(exc, user))
            return
        web.flash(resp, f"{'Moved' if op == 'move' else 'Copied'} {path} to {result}.")
        web.redirect(req, resp, web.link(result))

    def landing(self, src: str, dst: str, user: User | None) -> str | None:
        """The existing dataset a move or copy would replace, if any."""
        roots = self.web.access.roots
        loc = roots.locate(dst, user, "Copying files")
        if loc.is_dir() or not loc.relpath or not suffix(loc.relpath):
            dst = join_logical(
                loc.root, "/".join(p for p in (loc.relpath, src.rsplit("/", 1)[-1]) if p)
            )
            loc = roots.locate(dst, user)
        return dst if loc.exists() else None


class CommandAction(Page):
    """`POST /web/command`: one line of the command box."""

    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.web.render(req, resp, "command.html", title="Command", outcome=None, cwd="")

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        form = form_of(req)
        cwd = _form_value(form, "cwd")
        line = _form_value(form, "command")
        confirmed = _form_value(form, "confirmed") == "1"
        outcome = web.commands.run(line, cwd, web.user(req), confirmed, req.prefix)
        template = "_command_output.html" if web.fragment(req) == "command" else "command.html"
        web.render(
            req,
            resp,
            template,
            falcon.HTTP_200 if outcome.ok else falcon.HTTP_400,
            title="Command",
            outcome=outcome,
            cwd=cwd,
        )


# Accounts


class LoginPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is None:
            raise NotFound("Logins are disabled on this subscriber.")
        target = safe_next(req.get_param("next"))
        if web.user(req) is not None:
            web.redirect(req, resp, target)
            return
        web.render(req, resp, "login.html", title="Log in", next=target, email="", form_error=None)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is None:
            raise NotFound("Logins are disabled on this subscriber.")
        form = form_of(req)
        email, password = _form_value(form, "username").strip(), _form_value(form, "password")
        target = safe_next(_form_value(form, "next"))
        problem = None
        if not email or not password:
            problem = "Enter your email and your password."
        else:
            user = web.logins.authenticate(email, password, req.remote_addr or "")
            if user is None:
                problem = "Wrong email or password. Please try again."
        if problem:
            web.render(
                req,
                resp,
                "login.html",
                falcon.HTTP_400,
                title="Log in",
                next=target,
                email=email,
                form_error=problem,
            )
            return
        set_login_cookie(resp, web.store.create_token(user), web.secure_cookies)
        web.flash(resp, f"Welcome, {user.email}.")
        web.redirect(req, resp, target)


class LogoutPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.user(req) is None:
            web.redirect(req, resp, "/")
            return
        web.render(
            req,
            resp,
            "confirm.html",
            title="Log out",
            question=f"Log out {web.user(req).email}?",
            action="/logout",
            button="Log out",
            fields={},
            cancel="/",
        )

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.store is not None and req.context.token:
            web.store.delete_token(req.context.token)
        clear_login_cookie(resp, web.secure_cookies)
        web.flash(resp, "You are logged out.")
        web.redirect(req, resp, "/")


class RegisterPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        if web.user(req) is not None:
            web.redirect(req, resp, "/")
            return
        web.render(req, resp, "register.html", title="Create an account", email="", form_error=None)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        form = form_of(req)
        email = _form_value(form, "email").strip()
        password, again = _form_value(form, "password"), _form_value(form, "password2")
        problem = None
        if not EMAIL_RE.match(email):
            problem = "Enter a valid email address."
        elif passwords.password_problem(password):
            problem = passwords.password_problem(password) + "."
        elif password != again:
            problem = "The two passwords differ."
        elif web.settings.maxusers and web.store.count_users() >= web.settings.maxusers:
            problem = "This subscriber has reached its maximum number of users."
        else:
            try:
                user = web.store.add_user(email, password)
            except Conflict:
                problem = "An account with this email already exists. Log in instead?"
            except BadRequest as exc:
                problem = str(exc.detail)
        if problem:
            web.render(
                req,
                resp,
                "register.html",
                falcon.HTTP_400,
                title="Create an account",
                email=email,
                form_error=problem,
            )
            return
        set_login_cookie(resp, web.store.create_token(user), web.secure_cookies)
        web.flash(resp, f"Welcome, {email}: your account is ready.")
        web.redirect(req, resp, "/")


class ForgotPasswordPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        sent = req.path.endswith("-ok")
        web.render(req, resp, "forgot_password.html", title="Forgotten password", sent=sent)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        web = self.web
        email = _form_value(form_of(req), "email").strip()
        if not EMAIL_RE.match(email):
            web.render(
                req,
                resp,
                "forgot_password.html",
                falcon.HTTP_400,
                title="Forgotten password",
                sent=False,
                form_error="Enter a valid email address.",
            )
            return
        mail.request_reset(web.store, email, web.settings.urlbase)
        web.redirect(req, resp, "/forgot-password-ok")


class ResetPasswordPage(Page):
    @guarded
    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        self.web.render(req, resp, "reset_password.html", title="New password", token=token)

    @guarded
    def on_post(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        web = self.web
        form = form_of(req)
        password, again = _form_value(form, "password"), _form_value(form, "password2")
        problem = None
        if password != again:
            problem = "The two passwords differ."
        else:
            try:
                user = web.store.reset_password(token, password)
            except BadRequest as exc:
                detail = exc.detail
                problem = (
                    f"{detail['reason']}."
                    if isinstance(detail, dict)
                    else "This link is not valid any more: ask for a new one."
                )
        if problem:
            web.render(
                req,
                resp,
                "reset_password.html",
                falcon.HTTP_400,
                title="New password",
                token=token,
                form_error=problem,
            )
            return
        web.flash(resp, f"Your password is changed, {user.email}: log in with it.")
        web.redirect(req, resp, "/login")


class Favicon(Page):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "image/svg+xml"
        resp.data = (STATIC / "favicon.svg").read_bytes()
        resp.set_header("Cache-Control", "public, max-age=86400")


def register(
    app: falcon.App,
    store: Store | None,
    registry: RootRegistry,
    ops: FileOps,
    settings: SubscriberSettings,
    logins: ThrottledLogins | None = None,
) -> Web:
    """Add the web GUI's routes to the subscriber's app."""
    web = Web(store, registry, ops, settings, logins)
    home = HomePage(web)
    app.add_route("/", home)
    app.add_route("/roots", home)
    app.add_route("/roots/{path:path}", BrowsePage(web))
    app.add_route("/web/image/{path:path}", ImageResource(web))
    app.add_route("/web/changes", ChangesResource(web))
    app.add_route("/web/command", CommandAction(web))
    app.add_route("/web/upload/{path:path}", UploadAction(web))
    app.add_route("/web/delete/{path:path}", DeleteAction(web))
    app.add_route("/web/transfer/{path:path}", TransferAction(web))
    app.add_route("/web/subscribe/{path:path}", SubscribeAction(web))
    app.add_route("/web/unsubscribe/{path:path}", SubscribeAction(web, unsubscribe=True))
    app.add_route("/favicon.ico", Favicon(web))
    if web.store is not None:
        app.add_route("/login", LoginPage(web))
        app.add_route("/logout", LogoutPage(web))
        forgot = ForgotPasswordPage(web)
        app.add_route("/forgot-password", forgot)
        app.add_route("/forgot-password-ok", forgot)
        app.add_route("/reset-password/{token}", ResetPasswordPage(web))
        if settings.register:
            app.add_route("/register", RegisterPage(web))
    app.add_static_route("/static", str(STATIC))
    return web
