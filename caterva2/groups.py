"""`Group`: a container file (TreeStore/DictStore `.b2z`, HDF5) or a group inside one."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caterva2.client import Client, Dataset, File, Root


def _as_path(path: str | os.PathLike) -> str:
    return str(path).strip("/") if isinstance(path, str) else str(path)


class Group:
    """A container file (TreeStore/DictStore `.b2z`, HDF5) or a group inside one.

    Iterating gives the paths of its leaves (deep, relative to it);
    ``group["a/x"]`` is the group, dataset or file at that inner path.
    """

    def __init__(self, root: Root, path: str | os.PathLike, meta: dict | None = None) -> None:
        self.root = root
        self.name = _as_path(path)
        self.path = pathlib.PurePosixPath(f"{root.name}/{self.name}")
        self.meta = meta if meta is not None else self.root.client.get_info(self.path)

    def __repr__(self) -> str:
        return f"<Group: {self.path}>"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def client(self) -> Client:
        return self.root.client

    @property
    def file_list(self) -> list[str]:
        """Paths of the leaves below this group, relative to it."""
        return self.client.get_list(self.path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.file_list)

    def __len__(self) -> int:
        return len(self.file_list)

    def __contains__(self, item: object) -> bool:
        item = item.as_posix() if isinstance(item, pathlib.PurePath) else str(item)
        return item.strip("/") in self.file_list

    # What a container file answers as the file it is (an inner group has no file of its own).
    FILE_OPERATIONS = ("get_download_url", "download", "unfold", "move", "copy", "remove")

    def __getattr__(self, name: str) -> Any:
        if name in self.FILE_OPERATIONS:
            from caterva2.client import File  # the client imports this module

            return getattr(File(self.root, self.name, self.meta), name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getitem__(self, item: str | os.PathLike) -> Group | File | Dataset:
        return self.root[f"{self.name}/{_as_path(item).strip('/')}"]
