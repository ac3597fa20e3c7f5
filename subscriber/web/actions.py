"""The GUI's writes: upload, delete, move and copy, and the command line."""

from __future__ import annotations

from urllib.parse import quote

import falcon

from ...common.errors import BadRequest, Caterva2Error, Conflict, NotFound
from ...common.paths import join_logical, suffix
from ..store import User
from .commands import friendly, resolve
from .site import Page, _form_value, form_of, guarded, parent_of


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
