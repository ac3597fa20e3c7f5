"""The command box: the verbs of `cat2cli`, run on the server with the caller's rights."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np

from ...common.errors import BadRequest, Caterva2Error, Conflict, NotFound, Unauthorized
from ...common.paths import split_logical_path
from .. import passwords
from ..auth import require_superuser
from ..store import EMAIL_RE, Store, User
from ..user_accounts import check_room_for_user, delete_user
from .access import Access

HELP = """\
Paths starting with @ are full paths; others are relative to the folder shown.
  roots                      list the roots
  ls [PATH]                  list the datasets below a folder (also: list)
  info PATH                  show the metadata of a dataset
  show PATH[SLICE]           print values, e.g. show ds-1d.b2nd[10:20]
  url PATH                   the URL to fetch a dataset
  download PATH              a link to download a dataset
  cp SRC DST                 copy a dataset or folder (also: copy)
  mv SRC DST                 move or rename (also: move)
  rm PATH                    delete a dataset or folder, after confirmation (also: remove)
  upload                     use the Upload box: pick files or drop them there
  subscribe ROOT             follow a remote root (unsubscribe ROOT to stop)
  adduser [-S] EMAIL [PASS]  add a user (superusers only)
  deluser EMAIL              delete a user (superusers only)
  lsu [EMAIL]                list users (also: listusers)"""

ALIASES = {
    "list": "ls",
    "copy": "cp",
    "move": "mv",
    "remove": "rm",
    "listusers": "lsu",
    "?": "help",
}
SHOW_RE = re.compile(r"^(?P<path>[^\[]+)\[(?P<slice>[^\]]*)\]$")


@dataclass
class Outcome:
    """What a command printed, and where to go next."""

    command: str
    ok: bool = True
    text: str = ""
    link: tuple[str, str] | None = None  # (label, logical path or URL)
    link_is_path: bool = True
    confirm: str | None = None  # question to ask before running it for real
    changed: bool = False
    lines: list[str] = field(default_factory=list)


def resolve(arg: str, cwd: str, access: Access | None = None) -> str:
    """A full logical path: `@root/...` (or a remote root's name) as it is, else under `cwd`."""
    arg = arg.strip()
    first = arg.split("/", 1)[0]
    if arg.startswith("@") or (
        access is not None and access.is_remote(first) and access.remote.is_known(first)
    ):
        return arg.rstrip("/")
    if not cwd:
        raise BadRequest(f"Give a full path starting with a root, like @public/{arg}")
    root, rel = split_logical_path(cwd)
    joined = posixpath.normpath(posixpath.join(rel, arg)) if arg else rel
    if joined in (".", ""):
        return root
    if joined == ".." or joined.startswith("../"):
        raise BadRequest(f"{arg!r} leaves the root {root}")
    return f"{root}/{joined}"


class Commands:
    """Parses and runs one command line."""

    def __init__(self, access: Access, store: Store | None, maxusers: int | None) -> None:
        self.access = access
        self.store = store
        self.maxusers = maxusers

    def run(self, line: str, cwd: str, user: User | None, confirmed: bool, urlbase: str) -> Outcome:
        """Run `line`; errors come back as text, never as exceptions."""
        out = Outcome(line.strip())
        try:
            words = shlex.split(line)
        except ValueError as exc:
            out.ok, out.text = False, f"Error: {exc}"
            return out
        if not words:
            out.text = HELP
            return out
        verb = ALIASES.get(words[0].lower(), words[0].lower())
        args = [w for w in words[1:] if w not in ("--json",)]
        handler = getattr(self, f"do_{verb}", None)
        if handler is None:
            out.ok = False
            out.text = f"Unknown command {words[0]!r}. Type help for the list of commands."
            return out
        try:
            handler(out, args, cwd, user, confirmed, urlbase)
        except Caterva2Error as exc:
            out.ok = False
            out.text = f"Error: {friendly(exc, user)}"
        return out

    @staticmethod
    def _need(args: list[str], n: int, usage: str) -> None:
        if len(args) < n:
            raise BadRequest(f"usage: {usage}")

    def do_help(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        out.text = HELP

    def do_roots(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        lines = []
        for entry in self.access.root_entries(user):
            extra = "" if entry.local else (" (subscribed)" if entry.subscribed else "")
            extra += "" if entry.online else " (offline)"
            lines.append(entry.name + extra)
        out.text = "\n".join(lines)

    def do_ls(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        path = resolve(args[0], cwd, self.access) if args else cwd
        if not path:
            self.do_roots(out, args, cwd, user, confirmed, urlbase)
            return
        node = self.access.node(path, user)
        if node.kind == "missing":
            raise NotFound(f"{path} does not exist")
        if node.kind == "unsubscribed":
            raise BadRequest(f"{path} is not followed yet: subscribe {node.root}")
        if node.kind == "file":
            out.text = path.rsplit("/", 1)[-1]
        else:
            out.text = "\n".join(e.relpath for e in node.entries) or "(empty)"

    def do_info(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "info PATH")
        path = resolve(args[0], cwd, self.access)
        out.text = f"Getting info for {path}\n" + json.dumps(
            self.access.info(path, user), indent=2, ensure_ascii=False
        )
        out.link = ("Open", path)

    def do_show(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "show PATH[SLICE]")
        text = " ".join(args)
        slice_text = None
        match = SHOW_RE.match(text.strip())
        if match:
            text, slice_text = match["path"], match["slice"]
        path = resolve(text, cwd, self.access)
        from ...common.slices import parse_slice

        key = parse_slice(slice_text)
        value = self.access.read(path, user, key)
        if isinstance(value, bytes):
            try:
                out.text = value.decode("utf-8")
            except UnicodeDecodeError:
                out.text = "Binary data"
        else:
            out.text = np.array2string(
                np.asarray(value), threshold=1000, edgeitems=10, max_line_width=120
            )
        out.link = ("Open", path)

    def do_url(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "url PATH")
        path = resolve(args[0], cwd, self.access)
        out.text = f"{urlbase}/api/fetch/{quote(path, safe='/@!')}"

    def do_download(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "download PATH")
        path = resolve(args[0], cwd, self.access)
        node = self.access.node(path, user, list_entries=False)
        if node.kind != "file":
            raise NotFound(f"{path} is not a dataset")
        out.text = f"Download {path}:"
        out.link = (path.rsplit("/", 1)[-1], f"{urlbase}/api/download/{quote(path, safe='/@!')}")
        out.link_is_path = False

    def do_upload(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        out.text = (
            "Files on your computer are uploaded with the Upload box of a folder: "
            "choose them with the file picker, or drop them on it."
        )

    def _transfer(self, out: Outcome, args, cwd, user, move: bool) -> None:
        self._need(args, 2, ("mv" if move else "cp") + " SRC DST")
        src, dst = resolve(args[0], cwd, self.access), resolve(args[1], cwd, self.access)
        ops = self.access.ops
        result = ops.move(src, dst, user) if move else ops.copy(src, dst, user)
        out.text = f"Dataset {src} {'moved' if move else 'copied'} to {result}"
        out.link = ("Open", result)
        out.changed = True

    def do_cp(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._transfer(out, args, cwd, user, move=False)

    def do_mv(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._transfer(out, args, cwd, user, move=True)

    def do_rm(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "rm PATH")
        path = resolve(args[0], cwd, self.access)
        if not confirmed:
            self.access.roots.locate(path, user, "Removing files")  # rights first
            node = self.access.node(path, user)
            if node.kind == "missing":
                raise NotFound(f"{path} does not exist")
            what = (
                f"the folder {path} and its {len(node.entries)} datasets" if node.entries else path
            )
            out.confirm = f"Delete {what}? This cannot be undone."
            return
        removed = self.access.ops.remove(path, user)
        out.text = f"Dataset (or directory contents) removed: {removed}"
        out.changed = True

    def do_subscribe(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "subscribe ROOT")
        root = args[0].strip("/")
        if self.access.roots.is_local(root):
            out.text = "Ok"
            return
        self.access.follow(root, user)
        out.text = "Ok"
        out.link = ("Open", root)
        out.changed = True

    def do_unsubscribe(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        self._need(args, 1, "unsubscribe ROOT")
        self.access.unfollow(args[0].strip("/"), user)
        out.text = "Ok"
        out.changed = True

    def _users(self) -> Store:
        if self.store is None:
            raise NotFound("Users are disabled on this subscriber (login = false)")
        return self.store

    def do_adduser(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        store = self._users()
        superuser = any(a in ("-S", "--superuser") for a in args)
        args = [a for a in args if a not in ("-S", "--superuser")]
        self._need(args, 1, "adduser [-S] EMAIL [PASSWORD]")
        if user is None:
            raise Unauthorized("Unauthorized")
        if not user.is_superuser:
            raise Unauthorized("Only superusers can add users")
        name = args[0]
        password = args[1] if len(args) > 1 else passwords.random_password()
        if not EMAIL_RE.match(name):
            raise BadRequest(f"Error in adding {name}: not a valid email address")
        problem = passwords.password_problem(password)
        if problem:
            raise BadRequest(f"Error in adding {name}: {problem}")
        if store.get_user_by_email(name) is None:
            check_room_for_user(store, self.maxusers)
            try:
                store.add_user(name, password, superuser)
            except Conflict:
                pass
        out.text = f"User added: username={name!r} password={password!r} superuser={superuser}"

    def do_deluser(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        store = self._users()
        self._need(args, 1, "deluser EMAIL")
        if user is None:
            raise Unauthorized("Unauthorized")
        if not user.is_superuser:
            raise Unauthorized("Only superusers can delete users")
        delete_user(store, self.access.roots, args[0])
        out.text = f"User deleted: {args[0]}"

    def do_lsu(self, out: Outcome, args, cwd, user, confirmed, urlbase) -> None:
        store = self._users()
        require_superuser(user, "Listing users")
        users = store.list_users(args[0] if args else None)
        out.text = (
            "\n".join(f"{u.email}{' (superuser)' if u.is_superuser else ''}" for u in users)
            or "(no users)"
        )


def friendly(exc: Caterva2Error, user: User | None) -> str:
    """The message of an error, in words for a person."""
    detail = exc.detail
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    elif isinstance(detail, dict):
        detail = str(detail.get("reason") or detail.get("code") or detail)
    detail = str(detail)
    if exc.status == 401 and user is None and detail in ("Unauthorized", ""):
        return "You need to log in first."
    if detail == "Not Found":
        return "Not found."
    return detail
