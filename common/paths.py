"""Logical dataset paths (`<root>/<relpath>`) and their names on disk.

Every path that comes from a client goes through `split_logical_path`, so a
`..`, an absolute path, an empty path or a NUL byte never reaches the disk.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from .errors import BadRequest

# Suffixes stored as they are; any other file is stored compressed as `<name>.b2`.
NATIVE_SUFFIXES = (".b2nd", ".b2frame", ".b2", ".h5", ".hdf5")
HDF5_SUFFIXES = (".h5", ".hdf5")
SPECIAL_ROOTS = ("@public", "@personal", "@shared")


# Longest name of one folder or file, in UTF-8 bytes: file systems allow 255, and the
# stored name may grow by `.b2` and by the prefix of a temporary file (33 bytes).
MAX_NAME_BYTES = 200
# Control characters would end up in HTTP headers (`Content-Disposition`) and logs.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def check_relpath(relpath: str) -> str:
    """Validate a path relative to a root and return it normalised ('' = the root)."""
    if "\x00" in relpath:
        raise BadRequest("Invalid path: NUL byte in path")
    if relpath.startswith("/"):
        raise BadRequest(f"Invalid path {relpath!r}: absolute paths are not allowed")
    if CONTROL_CHARS.search(relpath):
        raise BadRequest(f"Invalid path {relpath!r}: control characters are not allowed")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"Invalid path {relpath!r}: '..' is not allowed")
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise BadRequest(
                f"Invalid path: the name {part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes"
            )
    return "/".join(parts)


def split_logical_path(path: str) -> tuple[str, str]:
    """Split `@root/dir/name` into (`@root`, `dir/name`), refusing unsafe paths."""
    if path is None or not str(path).strip("/"):
        raise BadRequest("Invalid path: empty path")
    path = str(path)
    if "\x00" in path:
        raise BadRequest("Invalid path: NUL byte in path")
    if path.startswith("/"):
        raise BadRequest(f"Invalid path {path!r}: absolute paths are not allowed")
    root, _, rest = path.partition("/")
    if root in ("", ".", ".."):
        raise BadRequest(f"Invalid path {path!r}: it must start with a root name")
    return root, check_relpath(rest)


def join_logical(root: str, relpath: str) -> str:
    """The logical path of `relpath` inside `root`."""
    return f"{root}/{relpath}" if relpath else root


def stored_name(logical: str) -> str:
    """The file name on disk for a logical name (`README.md` → `README.md.b2`)."""
    if logical.endswith(NATIVE_SUFFIXES):
        return logical
    return logical + ".b2"


def logical_name(stored: str) -> str:
    """The logical name of a stored file (`README.md.b2` → `README.md`)."""
    return stored.removesuffix(".b2") if stored.endswith(".b2") else stored


def is_hdf5(name: str) -> bool:
    """Whether a (logical or stored) name is a raw HDF5 file."""
    return name.lower().endswith(HDF5_SUFFIXES)


def suffix(name: str) -> str:
    """The suffix of a logical name, e.g. `.b2nd`, or '' when it has none."""
    return PurePosixPath(name).suffix
