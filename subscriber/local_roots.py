"""The local roots `@public`, `@personal` and `@shared`: where they live and who may use them."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
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
    # `path`'s stat (symlinks followed) when it was located; None: unknown or missing.
    found: os.stat_result | None = field(default=None, compare=False, repr=False)

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
        # Root directory → ((device, inode), real path): see `_real_root`.
        self._real_roots: dict[str, tuple[tuple[int, int], str]] = {}

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

    def _real_root(self, rootdir: Path) -> str:
        """The real path of a root directory, made if missing.

        Resolved again only when the directory it leads to is another one (a
        symlink on the way was changed): every request needs it, and one `stat`
        costs a fraction of resolving the path.
        """
        key = str(rootdir)
        try:
            st = os.stat(key)
        except FileNotFoundError:
            rootdir.mkdir(parents=True, exist_ok=True)
            st = os.stat(key)
        ident = (st.st_dev, st.st_ino)
        cached = self._real_roots.get(key)
        if cached is not None and cached[0] == ident:
            return cached[1]
        if not stat.S_ISDIR(st.st_mode):
            rootdir.mkdir(parents=True, exist_ok=True)  # raises the error it always did
        real = os.path.realpath(key)
        self._real_roots[key] = (ident, real)
        return real

    def _inside(self, rootdir: Path, relpath: str) -> os.stat_result | None:
        """Refuse a path whose real location (symlinks followed) leaves its root.

        Returns the path's stat (symlinks followed), None when nothing is there.
        The root's real path is known (`_real_root`): only the components below
        it can be symlinks, so each is looked at once (`lstat`), and meeting a
        symlink sends the whole path through `os.path.realpath`. Every system
        call lets other threads take the GIL, which under load costs far more
        than the call: a plain path costs one per component.
        """
        real_root = self._real_root(rootdir)
        current, st = real_root, None
        for part in relpath.split("/"):  # normalised: no '', '.' nor '..' (check_relpath)
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                return None  # nothing there, so nothing further to follow
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(rootdir / relpath)
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise BadRequest("Invalid path: it points outside its root")
                try:
                    return os.stat(real)
                except (FileNotFoundError, NotADirectoryError):
                    return None
        return st

    def locate(self, logical: str, user: User | None, action: str | None = None) -> Location:
        """Resolve a logical path; a file is found under its stored name when it has one."""
        root, relpath = split_logical_path(logical)
        rootdir = self.rootdir(root, user, action)
        if not relpath:
            self._real_root(rootdir)  # made if missing
            return Location(root, relpath, rootdir, rootdir)
        found = self._inside(rootdir, relpath)
        plain = rootdir / relpath
        if found is not None and stat.S_ISDIR(found.st_mode):
            return Location(root, relpath, rootdir, plain, found)
        stored_rel = stored_name(relpath)
        if stored_rel == relpath:  # datasets keep their names
            return Location(root, relpath, rootdir, plain, found)
        stored = rootdir / stored_rel
        stored_found = self._inside(rootdir, stored_rel)
        if stored_found is None and found is not None and stat.S_ISREG(found.st_mode):
            self._convert_dropped_file(plain, stored)
        return Location(root, relpath, rootdir, stored, stored_found)

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

    def disk_usage(self, with_tmp: bool = True) -> int:
        """Bytes used by every file of the state directory but the databases.

        `with_tmp=False`: not those in the temporary folder (writes still arriving).
        """
        total = 0
        for dirpath, dirnames, filenames in os.walk(self.statedir):
            if not with_tmp and Path(dirpath) == self.statedir and TMP_DIR in dirnames:
                dirnames.remove(TMP_DIR)
            for fname in filenames:
                if fname.startswith(("db.sqlite", "db.json")) and Path(dirpath) == self.statedir:
                    continue
                try:
                    total += os.lstat(os.path.join(dirpath, fname)).st_size
                except FileNotFoundError:
                    pass
        return total
