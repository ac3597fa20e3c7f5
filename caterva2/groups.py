"""`Group`: a container file (TreeStore/DictStore `.b2z`, HDF5) or a group inside one."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from caterva2.root_entries import RootEntry, as_path

if TYPE_CHECKING:
    from caterva2.client import Dataset, File


class Group(RootEntry):
    """A container file (TreeStore/DictStore `.b2z`, HDF5) or a group inside one.

    Iterating gives the paths of its leaves (deep, relative to it);
    ``group["a/x"]`` is the group, dataset or file at that inner path.
    """

    label = "Group"

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
        return self.root[f"{self.name}/{as_path(item).strip('/')}"]
