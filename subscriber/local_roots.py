"""The local roots `@public`, `@personal` and `@shared`: where they live and who may use them."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..common import b2files
from ..common.errors import BadRequest, NotFound, Unauthorized
from ..common.paths import (
    SPECIAL_ROOTS,
    join_logical,
    logical_name,
    split_logical_path,
    stored_name,
)
from .store import User

# Files being written or converted live here, on the same file system, until renamed.
TMP_DIR = "tmp"


@dataclass(frozen=True)
class Location:
    """A logical path resolved to the disk: `path` is the stored file or directory."""

    root: str
    relpath: str
    rootdir: Path
    path: Path

    @property
    def logical(self) -> str:
        return join_logical(self.root, self.relpath)

    @property
    def stored_logical(self) -> str:
        """The logical path with the stored file name (`README.md.b2`)."""
        rel = self.path.relative_to(self.rootdir).as_posix()
        return join_logical(self.root, "" if rel == "." else rel)

    def exists(self) -> bool:
        return self.path.exists()

    def is_dir(self) -> bool:
        return self.path.is_dir()


class LocalRoots:
    """Maps logical paths of the three local roots to the state directory."""

    def __init__(self, statedir: Path, login: bool) -> None:
        self.statedir = Path(statedir).resolve()
        self.login = login
        self.tmpdir = self.statedir / TMP_DIR
        for name in ("public", "shared", "personal", TMP_DIR):
            (self.statedir / name).mkdir(parents=True, exist_ok=True)
        self._convert_lock = threading.Lock()

    def names(self, user: User | None) -> list[str]:
        """The local roots `user` can see, in the original's order."""
        return ["@public", "@personal", "@shared"] if user else ["@public"]

    def is_local(self, root: str) -> bool:
        return root in SPECIAL_ROOTS

    def rootdir(self, root: str, user: User | None, action: str | None = None) -> Path:
        """The directory of a root, or 401/404 when `user` may not use it.

        `action` names a write ("Uploading", ...): writing needs a user everywhere.
        """
        if root not in SPECIAL_ROOTS:
            raise NotFound(f"Root {root} does not exist")
        if user is None and (action or root != "@public"):
            if action and not self.login:
                raise Unauthorized(f"{action} requires authentication")
            if action:
                raise Unauthorized("Unauthorized")
            raise Unauthorized(f"Accessing {root} requires authentication")
        if root == "@public":
            return self.statedir / "public"
        if root == "@shared":
            return self.statedir / "shared"
        return self.personal_dir(user)

    def personal_dir(self, user: User) -> Path:
        return self.statedir / "personal" / user.id

    def _inside(self, rootdir: Path, path: Path) -> Path:
        """Refuse a path whose real location (symlinks followed) leaves its root."""
        real_root = os.path.realpath(rootdir)
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise BadRequest("Invalid path: it points outside its root")
        return path

    def locate(self, logical: str, user: User | None, action: str | None = None) -> Location:
        """Resolve a logical path; a file is found under its stored name when it has one."""
        root, relpath = split_logical_path(logical)
        rootdir = self.rootdir(root, user, action)
        rootdir.mkdir(parents=True, exist_ok=True)
        if not relpath:
            return Location(root, relpath, rootdir, rootdir)
        plain = self._inside(rootdir, rootdir / relpath)
        if plain.is_dir():
            return Location(root, relpath, rootdir, plain)
        stored = self._inside(rootdir, rootdir / stored_name(relpath))
        if stored != plain and not stored.exists() and plain.is_file():
            self._convert_dropped_file(plain, stored)
        return Location(root, relpath, rootdir, stored)

    def _convert_dropped_file(self, plain: Path, stored: Path) -> None:
        """Compress a regular file someone dropped into a root into its `.b2` form."""
        with self._convert_lock:
            if stored.exists() or not plain.is_file():
                return
            tmp = self.new_tmp_path(stored.name)
            b2files.compress_file(plain, tmp)
            os.replace(tmp, stored)
            plain.unlink(missing_ok=True)

    def new_tmp_path(self, name: str = "") -> Path:
        """A fresh path in the state's temporary folder."""
        import uuid

        return self.tmpdir / f"{uuid.uuid4().hex}-{Path(name).name}"

    def listing(self, loc: Location) -> list[str]:
        """Logical names of every file below a directory, or the name of one file."""
        if loc.path.is_file():
            return [logical_name(loc.path.name)]
        if not loc.path.is_dir():
            return []
        names = []
        for dirpath, _dirnames, filenames in os.walk(loc.path):
            base = Path(dirpath).relative_to(loc.path)
            for fname in filenames:
                names.append(logical_name((base / fname).as_posix()))
        return sorted(names)

    def disk_usage(self) -> int:
        """Bytes used by every file of the state directory but the databases."""
        total = 0
        for dirpath, _dirnames, filenames in os.walk(self.statedir):
            for fname in filenames:
                if fname.startswith(("db.sqlite", "db.json")) and Path(dirpath) == self.statedir:
                    continue
                try:
                    total += os.lstat(os.path.join(dirpath, fname)).st_size
                except FileNotFoundError:
                    pass
        return total
