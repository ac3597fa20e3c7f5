"""Container files browsed as folders: TreeStore/DictStore `.b2z` files and HDF5 files.

A path may go on past a container file (`dir/tree.b2z/a/x`, `data.h5/grp/dset`):
`inside_container` cuts it at the first container name that is a regular file
(a folder named `results.h5/` stays a folder), and the part after it is the
inner path of a group or a leaf.  Nothing is copied or converted:

- a `.b2z` is opened read-only with blosc2 (the shared `datasets.CONTAINERS`
  cache) and a leaf is one of its arrays, big ones read in place from the zip,
  small ones from its `embed.b2e`;
- an `.h5`/`.hdf5` is indexed once per version of the file by a task in the HDF5
  worker processes (`common.hdf5_workers`), and a leaf reads its data as an
  unfolded shell does (`hdf5_shells.ShellDataset`), so a corrupt file fails one
  request, never the subscriber.

A container, or a group inside one, answers `/api/info` with upstream's group
shape (`{"kind": "group", "mtime", "size", "nfiles"}`); `/api/list` of a
container or group lists its leaves (deep, relative to it), while listing the
folder that holds a container lists the container file itself, as upstream
2026.9.2 and the older clients expect.  A `.b2z` that holds a CTable is a table,
not a container: it is left to the table code.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from ..common import b2meta, hdf5_attrs, hdf5_convert, hdf5_workers
from ..common.b2z_files import B2Z_SUFFIX, b2z_kind
from ..common.errors import BadRequest, NotFound, PreconditionFailed
from ..common.falcon_app import etag_matches
from ..common.hdf5_base import HDF5Error, file_signature
from ..common.paths import HDF5_SUFFIXES, join_logical
from ..common.slices import Key
from . import hdf5_shells
from .datasets import (
    CONTAINERS,
    OpenFile,
    damaged_data,
    filtered_result,
    require_file,
    selection_result,
    version_tag,
)
from .local_roots import Location
from .root_interface import Dataset, Download, FetchResult

FOLDER_SUFFIXES = (B2Z_SUFFIX, *HDF5_SUFFIXES)
NOT_A_DATASET = "{} is a group, not a dataset: list it or read one of its leaves"


def is_container_name(name: str) -> bool:
    """Whether a file name is one that may be browsed as a folder."""
    return name.lower().endswith(FOLDER_SUFFIXES)


def inside_container(
    relpath: str, locate: Callable[[str], Location]
) -> tuple[Location, str] | None:
    """(the container file's location, inner path) of a path that goes into one, else None.

    `locate` resolves a relative path of the same root (rights checked). A folder
    named like a container (`results.h5/`) is a folder: the split is tried at
    each container name until one is a regular file.
    """
    parts = relpath.split("/")
    for i, part in enumerate(parts[:-1]):
        if is_container_name(part):
            loc = locate("/".join(parts[: i + 1]))
            if loc.path.is_file():
                return loc, "/".join(parts[i + 1 :])
            if not loc.path.is_dir():
                return None  # nothing there: the path is missing
    return None


def ancestors(key: str) -> list[str]:
    """The groups above an inner path: `"a/b/x"` → `["a", "a/b"]`."""
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class Container(abc.ABC):
    """One version of a container file: its groups and leaves (inner paths, no leading '/')."""

    def __init__(self, loc: Location, leaves: list[str]) -> None:
        self.loc = loc
        self.stat = loc.path.stat()
        self.all_leaves = sorted(leaves)
        self.groups = {group for leaf in leaves for group in ancestors(leaf)}
        self.leaf_set = set(leaves)

    def leaves(self, inner: str = "") -> list[str]:
        """Leaves below the group `inner` ('' = the whole container), relative to it."""
        if not inner:
            return list(self.all_leaves)
        prefix = inner + "/"
        return [leaf[len(prefix) :] for leaf in self.all_leaves if leaf.startswith(prefix)]

    def is_group(self, inner: str) -> bool:
        return inner == "" or inner in self.groups

    def node(self, inner: str) -> Dataset:
        """The group or leaf at `inner`; 404 when the container has no such path."""
        inner = inner.strip("/")
        if self.is_group(inner):
            return GroupDataset(self, inner)
        if inner in self.leaf_set:
            return self.leaf(inner)
        raise NotFound(f"{self.loc.logical} has no member {inner}")

    def logical(self, inner: str) -> str:
        return join_logical(
            self.loc.root, f"{self.loc.relpath}/{inner}" if inner else self.loc.relpath
        )

    @abc.abstractmethod
    def leaf(self, inner: str) -> Dataset:
        """The leaf dataset at `inner` (known to be one)."""


class GroupDataset(Dataset):
    """A container or a group inside one: described and listed, never fetched."""

    def __init__(self, container: Container, inner: str) -> None:
        self.container = container
        self.inner = inner
        self.logical = container.logical(inner)

    def info(self) -> tuple[dict, str | None]:
        st = self.container.stat
        whole = self.inner == ""
        # A whole HDF5 file keeps the number the older contract (2025.8.7) gives its mtime.
        numeric = whole and isinstance(self.container, HDF5Container)
        return {
            "kind": "group",
            "mtime": st.st_mtime if numeric else b2meta.iso_mtime(st.st_mtime),
            # The file's size for a whole container; an inner group's is not cheap to know.
            "size": st.st_size if whole else None,
            "nfiles": len(self.container.leaves(self.inner)),
        }, None

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        raise BadRequest(NOT_A_DATASET.format(self.logical))

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        raise BadRequest(NOT_A_DATASET.format(self.logical))

    def download(self) -> Download:
        raise BadRequest(NOT_A_DATASET.format(self.logical))


# -- .b2z ---------------------------------------------------------------------------


def _store_leaves(store: Any) -> list[str]:
    """Leaf keys of an open TreeStore or DictStore (a key some other key goes below is a group)."""
    keys = [k.strip("/") for k in store.keys()]
    groups = {group for key in keys for group in ancestors(key)}
    return [k for k in keys if k and k not in groups]


class B2zContainer(Container):
    """A `.b2z` written by a TreeStore or a DictStore, read in place."""

    def __init__(self, loc: Location, opened: OpenFile) -> None:
        self.opened = opened
        super().__init__(loc, opened.derive("leaves", _store_leaves))

    def leaf(self, inner: str) -> Dataset:
        def read(store: Any) -> Any:
            with damaged_data(self.logical(inner)):
                return store["/" + inner]

        obj = self.opened.derive(f"leaf:{inner}", read)
        if not isinstance(obj, blosc2.NDArray | blosc2.SChunk):
            raise BadRequest(f"{self.logical(inner)} is a {type(obj).__name__}, not an array")
        return B2zLeaf(self, inner, obj)


class B2zLeaf(Dataset):
    """An array stored in a `.b2z`; its version is the container file's."""

    def __init__(self, container: B2zContainer, inner: str, obj: Any) -> None:
        self.container = container
        self.inner = inner
        self.obj = obj
        self.logical = container.logical(inner)

    def info(self) -> tuple[dict, str | None]:
        meta = b2meta.container_meta(self.obj, self.logical, self.container.stat.st_mtime)
        return meta, version_tag(self.container.opened)

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        if field and filter_:
            raise BadRequest("Cannot use 'field' and 'filter' together")
        with damaged_data(self.logical):
            if filter_:
                return filtered_result(self.obj, key, filter_)
            return selection_result(self.obj, key, field)

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        tag = version_tag(self.container.opened)
        if if_match is not None and not etag_matches(if_match, tag):
            raise PreconditionFailed(f"{self.logical} changed: its version is now {tag}")
        schunk = self.obj.schunk if isinstance(self.obj, blosc2.NDArray) else self.obj
        if not 0 <= nchunk < schunk.nchunks:
            raise BadRequest(
                f"Chunk {nchunk} out of range (the dataset has {schunk.nchunks} chunks)"
            )
        with damaged_data(self.logical):
            return schunk.get_chunk(nchunk), tag

    def download(self) -> Download:
        """The leaf as a frame of its own (`x.b2nd`, or `x.b2frame` for a byte stream)."""
        with damaged_data(self.logical):
            frame = self.obj.to_cframe()
        ext = ".b2nd" if isinstance(self.obj, blosc2.NDArray) else ".b2frame"
        name = self.inner.rsplit("/", 1)[-1]
        return Download(name + ext, "application/octet-stream", iter([frame]), len(frame))


# -- HDF5 ---------------------------------------------------------------------------


def index_task(h5path: str) -> dict[str, Any]:
    """Datasets (with their Blosc2 layout and attributes) of an HDF5 file (in a worker).

    Datasets Blosc2 cannot represent are left out, as unfolding does.
    """
    f = hdf5_workers.h5file(h5path)
    datasets: dict[str, Any] = {}
    for node in hdf5_convert.walk(f):
        if node.kind != "dataset":
            continue
        try:
            layout = hdf5_convert.dataset_layout(node.obj)
        except HDF5Error:
            continue
        attrs = hdf5_attrs.read_attrs(node.obj).plain
        datasets[node.path] = {"layout": layout, "attrs": attrs}
    return datasets


class HDF5Indexes:
    """The index of each HDF5 file, kept while the file stays the same version."""

    KEPT = 64

    def __init__(self) -> None:
        self._kept: dict[str, tuple[tuple, dict]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> dict[str, Any]:
        key = str(path)
        signature = file_signature(key)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and kept[0] == signature:
            return kept[1]
        index = hdf5_shells.run(index_task, key)
        with self._lock:
            while len(self._kept) >= self.KEPT:
                del self._kept[next(iter(self._kept))]
            self._kept[key] = (signature, index)
        return index


HDF5_INDEXES = HDF5Indexes()


class HDF5Container(Container):
    """An HDF5 file stored as it is, its datasets read through the HDF5 workers."""

    def __init__(self, loc: Location) -> None:
        self.index = HDF5_INDEXES.get(loc.path)
        super().__init__(loc, list(self.index))

    def leaf(self, inner: str) -> Dataset:
        entry = self.index[inner]
        shell = hdf5_convert.new_array(entry["layout"], vlmeta=entry["attrs"])
        return HDF5Leaf(self, inner, shell)


class HDF5Leaf(hdf5_shells.ShellDataset):
    """A dataset inside an HDF5 file browsed as a folder: a shell made in memory."""

    def __init__(self, container: HDF5Container, inner: str, shell: blosc2.NDArray) -> None:
        super().__init__(container.loc, shell, container.stat.st_mtime)
        self.container = container
        self.inner = inner
        self.logical = container.logical(inner)

    def source(self) -> hdf5_shells.Source:
        params = {
            "shape": list(self.shell.shape),
            "chunks": list(self.shell.chunks),
            "blocks": list(self.shell.blocks),
            "dtype": b2meta.dtype_to_str(self.shell.dtype),
            "cparams": b2meta.cparams_dict(self.shell.schunk.cparams),
        }
        return hdf5_shells.Source(str(self.container.loc.path), self.inner, params)

    def download_name(self) -> str:
        return self.inner.rsplit("/", 1)[-1] + ".b2nd"

    def info(self) -> tuple[dict, str | None]:
        meta = hdf5_shells.info(self.shell, self.logical, self.mtime)
        meta["schunk"]["vlmeta"] = {k: _plain(v) for k, v in meta["schunk"]["vlmeta"].items()}
        return meta, None


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


# -- finding containers ----------------------------------------------------------------


def container_at(loc: Location) -> Container | None:
    """The container stored at `loc`, None when the file is not one (a CTable, a plain file).

    A container that cannot be read is a 400 (its leaves cannot be served).
    """
    path = require_file(loc)
    name = path.name.lower()
    if name.endswith(HDF5_SUFFIXES):
        return HDF5Container(loc)
    if not name.endswith(B2Z_SUFFIX) or b2z_kind(path) != "group":
        return None
    try:
        opened = CONTAINERS.get(path, loc.found)
    except FileNotFoundError:
        raise NotFound("Not Found") from None
    except Exception as exc:
        raise BadRequest(f"{loc.logical} is not a readable container: {exc}") from None
    if not isinstance(opened.obj, blosc2.DictStore):
        return None
    return B2zContainer(loc, opened)
