"""What sits at a path of a root, as the client sees it: the base of `File` and `Group`."""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from caterva2.client import Client, Root


def as_path(path: str | os.PathLike) -> str:
    """A path as the text the server takes (no leading or trailing slash)."""
    return str(path).strip("/") if isinstance(path, str) else str(path)


class RootEntry:
    """A path in a root and its metadata (`/api/info`, fetched on creation unless given)."""

    label = "Entry"  # what `repr` calls it

    def __init__(self, root: Root, path: str | os.PathLike, meta: dict | None = None) -> None:
        self.root = root
        self.name = as_path(path)
        self.path = pathlib.PurePosixPath(f"{root.name}/{self.name}")
        self.meta = meta if meta is not None else root.client.get_info(self.path)

    def __repr__(self) -> str:
        return f"<{self.label}: {self.path}>"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def client(self) -> Client:
        """The client of the root."""
        return self.root.client
