"""Pages for browsing: roots, folders and datasets, PNG slices, change stamps, follow buttons."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import falcon

from ...common.errors import BadRequest, Caterva2Error, NotFound
from . import previews, table_pages, views
from .access import Node
from .commands import friendly
from .site import MAX_LISTED, Page, Web, crumbs, guarded, parent_of

log = logging.getLogger(__name__)


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
        folder = (
            node
            if node.kind in ("root", "dir", "group")
            else web.access.node(parent_of(path), user)
        )
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
            "writable": web.access.writable(node.root, user) and not node.in_container,
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
        spec = previews.image_spec(meta, vlmeta)
        tabs = []
        if meta.kind in ("array", "lazy", "table"):
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
            rows_page=None,
            content=None,
            image=None,
            urlbase=req.prefix,
        )
        try:
            if view == "data" and meta.kind == "table":
                columns = [name for name, _ in meta.fields]
                page = table_pages.rows_page(web.access.registry, node.path, user, columns, params)
                ctx["rows_page"] = page
            elif view == "data":
                ctx["table"] = views.table_view(web.access, node.path, user, meta, params)
            elif view == "image":
                stamp = web.access.stamp(node.path, user)
                ctx["image"] = self.image_ctx(req, node, meta, spec, stamp)
            elif view == "content":
                ctx["content"] = previews.content_view(web.access, node.path, user, info)
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
            spec = previews.image_spec(meta, vlmeta)
            if spec is None:
                raise BadRequest(f"{path} cannot be shown as an image")
            axis = req.get_param_as_int("axis", default=0)
            index = req.get_param_as_int("i", default=0)
            data = previews.render_png(web.access, path, user, spec, meta.shape, axis, index)
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
