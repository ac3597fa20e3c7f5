"""Logical dataset paths (`<root>/<relpath>`) and their names on disk.

Every path that comes from outside goes through `check_relpath` (a client's
through `split_logical_path`; a broker message's or a publisher answer's through
`check_remote_path`), so a `..`, an absolute path, an empty path, a control
character, a backslash or an encoded separator never reaches the disk.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from .errors import BadRequest

CONTAINER_SUFFIXES = (".b2nd", ".b2frame")
"""Blosc2 containers: what a publisher serves as stored (any other file, .h5 included,
it serves as a Blosc2 frame of the file's bytes)."""
# Suffixes a subscriber stores as they are; any other file is stored compressed as `<name>.b2`.
STORED_AS_IS_SUFFIXES = (".b2nd", ".b2frame", ".b2", ".b2z", ".h5", ".hdf5")
HDF5_SUFFIXES = (".h5", ".hdf5")
SPECIAL_ROOTS = ("@public", "@personal", "@shared")


# Longest name of one folder or file, in UTF-8 bytes: file systems allow 255, and the
# stored name may grow by `.b2` and by the prefix of a temporary file (33 bytes).
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 4096
"""Longest path relative to a root (Linux's PATH_MAX)."""
MAX_ROOT_NAME = 100
"""Longest name of a published root (it is a routing key and a cache folder)."""
MAX_URL = 2048
"""Longest publisher URL a root announcement may carry."""

# Control characters would end up in HTTP headers (`Content-Disposition`) and logs.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# `%2e`, `%2f`, `%5c`, `%00`: a name that some layer may decode into `..`, `/`, `\\` or NUL.
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
# Published root names: routing keys without topic wildcards (`*`, `#`), and
# never one of the local roots, whose names start with `@`.
_ROOT_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ROOT_NAME - 1}}}")


def check_relpath(relpath: str) -> str:
    """Validate a path relative to a root and return it normalised ('' = the root)."""
    if not isinstance(relpath, str):
        raise BadRequest(f"Invalid path {relpath!r}: not a string")
    if "\x00" in relpath:
        raise BadRequest("Invalid path: NUL byte in path")
    if CONTROL_CHARS.search(relpath):
        raise BadRequest(f"Invalid path {relpath!r}: control characters are not allowed")
    if "\\" in relpath:
        raise BadRequest(f"Invalid path {relpath!r}: backslashes are not allowed")
    if relpath.startswith("/"):
        raise BadRequest(f"Invalid path {relpath!r}: absolute paths are not allowed")
    if _ENCODED_SEPARATOR.search(relpath):
        raise BadRequest(
            f"Invalid path {relpath!r}: percent-encoded dots, separators and NUL are not allowed"
        )
    if len(relpath.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"Invalid path: longer than {MAX_PATH_BYTES} bytes")
    parts = [p for p in relpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"Invalid path {relpath!r}: '..' is not allowed")
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise BadRequest(
                f"Invalid path: the name {part[:40]!r}... is longer than {MAX_NAME_BYTES} bytes"
            )
    return "/".join(parts)


def check_remote_path(relpath: str) -> str:
    """Validate a dataset path named by a broker message or a publisher's answer.

    The same rules as a client's path (`check_relpath`), and it must name
    something inside the root, as given: a path that only normalises into a
    valid one (`a//b`, `./a`) is refused too, since the sender meant something else.
    """
    checked = check_relpath(relpath)
    if not checked:
        raise BadRequest("Invalid path: a dataset path is required")
    if checked != relpath:
        raise BadRequest(f"Invalid path {relpath!r}: not in normal form ({checked!r})")
    return checked


def check_root_name(name: str) -> str:
    """Validate the name of a published root (announcements, change messages, cache folders)."""
    if not isinstance(name, str) or not _ROOT_NAME.fullmatch(name):
        shown = name[:60] + "..." if isinstance(name, str) and len(name) > 60 else name
        raise BadRequest(
            f"Invalid root name {shown!r}: use 1-{MAX_ROOT_NAME} of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    if name in (".", ".."):
        raise BadRequest(f"Invalid root name {name!r}")
    return name


def check_publisher_url(url: str) -> str:
    """Validate the URL a root announcement gives for its publisher (http or https)."""
    if not isinstance(url, str) or not url:
        raise BadRequest("Invalid publisher URL: empty")
    if len(url) > MAX_URL:
        raise BadRequest(f"Invalid publisher URL: longer than {MAX_URL} characters")
    if CONTROL_CHARS.search(url) or " " in url:
        raise BadRequest(f"Invalid publisher URL {url[:80]!r}: spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise BadRequest(f"Invalid publisher URL {url[:80]!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"Invalid publisher URL {url[:80]!r}: need http(s)://host[:port][/path]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadRequest(
            f"Invalid publisher URL {url[:80]!r}: no credentials, query or fragment allowed"
        )
    return url


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
    if logical.endswith(STORED_AS_IS_SUFFIXES):
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
