"""The kinds of root behind `root_interface`: local directories and remote roots.

A local root holds files of several kinds: stored Blosc2 containers
(`datasets.StoredDataset`), raw HDF5 files (`datasets.RawHDF5Dataset`),
unfolded HDF5 datasets (`hdf5_shells.ShellDataset`) and saved lazy expressions
(`saved_expressions.SavedExpression`). Which one a file is shows only once it
is opened, so `LocalDataset` finds out at its first read, after the reader's
rights were checked: a request names its errors in the original's order
(rights, then the request's parameters, then the dataset).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from ..common.b2z_files import B2Z_SUFFIX, b2z_kind
from ..common.errors import BadRequest, NotFound
from ..common.paths import is_hdf5, join_logical
from ..common.slices import Key
from . import containers, remote_containers, remote_tables
from .compute_budget import Runner
from .ctables import TableDataset
from .datasets import CONTAINERS, RawHDF5Dataset, StoredDataset, require_file
from .hdf5_shells import ShellDataset
from .local_roots import LocalRoots, Location
from .remote_tables import RemoteTable
from .root_interface import Dataset, Download, FetchResult, Root, TableQuery, WholeFile
from .store import User

if TYPE_CHECKING:
    from .remote_roots import RemoteRoots
    from .saved_expressions import Expressions


def local_dataset(loc: Location, user: User | None, expressions: Expressions | None) -> Dataset:
    """What the file at `loc` is, as a dataset read by `user`."""
    path = require_file(loc)
    if containers.is_container_name(path.name):
        try:
            container = containers.container_at(loc)
        except BadRequest:
            container = None  # unreadable: described and read as the file it is
        if container is not None:
            return ContainerFile(loc, container, plain_dataset(loc, user, expressions))
    return plain_dataset(loc, user, expressions)


def plain_dataset(loc: Location, user: User | None, expressions: Expressions | None) -> Dataset:
    """The file at `loc` as the one dataset it holds (a container file: its bytes)."""
    path = require_file(loc)
    if is_hdf5(path.name):
        return RawHDF5Dataset(loc)
    if path.name.endswith(B2Z_SUFFIX) and b2z_kind(path) == "ctable":
        return TableDataset(loc, expressions.runner if expressions is not None else None)
    try:
        opened = CONTAINERS.get(path, loc.found)
    except FileNotFoundError:
        raise NotFound("Not Found") from None
    except Exception:
        return StoredDataset(loc)  # not Blosc2: its reads say so
    if opened.is_shell:
        return ShellDataset(loc, opened.obj, opened.stat.st_mtime)
    if expressions is not None and (saved := expressions.saved(loc, user)) is not None:
        return saved
    return StoredDataset(loc)


class DeferredDataset(Dataset):
    """A dataset whose kind is found at its first read (rights first); every read goes to it."""

    @functools.cached_property
    def kind(self) -> Dataset:
        raise NotImplementedError

    def info(self) -> tuple[dict, str | None]:
        return self.kind.info()

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        return self.kind.fetch(key, field, filter_, blocks)

    def query_table(self, key: Key, query: TableQuery) -> FetchResult:
        return self.kind.query_table(key, query)

    def table_window(self, start: int, stop: int, query: TableQuery) -> tuple[np.ndarray, int]:
        return self.kind.table_window(start, stop, query)

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        return self.kind.chunk(nchunk, if_match)

    def download(self) -> Download:
        return self.kind.download()


class LocalDataset(DeferredDataset):
    """A file of a local root, its kind found at the first read (see the module's note)."""

    def __init__(self, loc: Location, user: User | None, expressions: Expressions | None):
        self.loc = loc
        self.logical = loc.logical
        self.user = user
        self.expressions = expressions

    @functools.cached_property
    def kind(self) -> Dataset:
        return local_dataset(self.loc, self.user, self.expressions)


class LocalRoot(Root):
    """`@public`, `@personal` or `@shared` as one user sees it; rights are checked at each use."""

    local = True

    def __init__(
        self,
        roots: LocalRoots,
        name: str,
        user: User | None,
        expressions: Expressions | None = None,
    ) -> None:
        self.roots = roots
        self.name = name
        self.user = user
        self.expressions = expressions

    def locate(self, relpath: str) -> Location:
        return self.roots.locate(join_logical(self.name, relpath), self.user)

    def listing(self, relpath: str) -> list[str]:
        """A folder's files; a container's or an inner group's leaves; one file's name."""
        found = containers.inside_container(relpath, self.locate)
        if found is not None:
            loc, inner = found
            container = containers.container_at(loc)
            if container is None:
                raise NotFound(f"{loc.logical} is not a container")
        else:
            loc, inner = self.locate(relpath), ""
            if not (containers.is_container_name(loc.path.name) and loc.path.is_file()):
                return self.roots.listing(loc)
            try:
                container = containers.container_at(loc)
            except BadRequest:
                container = None  # unreadable: listed as the file it is
            if container is None:
                return self.roots.listing(loc)
        inner = inner.strip("/")
        if container.is_group(inner):
            return container.leaves(inner)
        if inner in container.leaf_set:
            return [inner.rsplit("/", 1)[-1]]
        raise NotFound(f"{loc.logical} has no member {inner}")

    def dataset(self, relpath: str) -> Dataset:
        found = containers.inside_container(relpath, self.locate)
        if found is not None:
            return ContainerMember(*found)
        return LocalDataset(self.locate(relpath), self.user, self.expressions)


class ContainerMember(DeferredDataset):
    """A group or leaf inside a container file, found at its first read (rights first)."""

    def __init__(self, loc: Location, inner: str) -> None:
        self.loc = loc
        self.inner = inner
        self.logical = join_logical(loc.root, f"{loc.relpath}/{inner}")

    @functools.cached_property
    def kind(self) -> Dataset:
        container = containers.container_at(self.loc)
        if container is None:
            raise NotFound(f"{self.loc.logical} is not a container")
        return container.node(self.inner)


class ContainerFile(Dataset):
    """A container file itself: described as a group, read as the file it is.

    A whole TreeStore/DictStore `.b2z` is fetched as stored (how clients download
    it) and has no slices; an HDF5 file keeps the reads of a raw HDF5 file.
    """

    def __init__(self, loc: Location, container: containers.Container, plain: Dataset) -> None:
        self.loc = loc
        self.logical = loc.logical
        self.container = container
        self.plain = plain

    def info(self) -> tuple[dict, str | None]:
        return self.container.node("").info()

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        if is_hdf5(self.loc.path.name):
            return self.plain.fetch(key, field, filter_, blocks)
        if key is None and not field and not filter_:
            return WholeFile(self.loc.path)
        raise BadRequest(containers.NOT_A_DATASET.format(self.logical))

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        return self.plain.chunk(nchunk, if_match)

    def download(self) -> Download:
        return self.plain.download()


class RemoteDataset(Dataset):
    """A dataset of a remote root, read through the chunk cache."""

    def __init__(
        self, remote: RemoteRoots, root: str, relpath: str, runner: Runner | None = None
    ) -> None:
        self.remote = remote
        self.root = root
        self.relpath = relpath
        self.logical = join_logical(root, relpath)
        self.runner = runner

    def group_info(self) -> dict | None:
        """The info of a container or a group inside one; None for any other path."""
        if not self.relpath or not remote_containers.is_group_path(self.relpath):
            return None
        paths = self.remote.dataset_paths(self.root)[0]  # follows the root first
        return remote_containers.group_of(self.remote.store, self.root, self.relpath, paths)

    def table(self) -> RemoteTable | None:
        """The table a publisher serves as its columns at this path; None for anything else."""
        if not self.relpath.lower().endswith(B2Z_SUFFIX):
            return None
        self.remote.ensure_followed(self.root)
        found = remote_tables.description_of(self.remote, self.root, self.relpath)
        if found is None:
            return None
        return RemoteTable(self.remote, self.root, self.relpath, found, self.runner)

    def info(self) -> tuple[dict, str | None]:
        if (table := self.table()) is not None:
            return table.info()
        group = self.group_info()
        if group is not None:
            return group, None
        return self.remote.versioned_info(self.root, self.relpath)

    def _not_a_group(self) -> None:
        """A container or a group inside one is listed or described, never read (400)."""
        if self.group_info() is not None:
            remote_containers.refuse_group(self.logical)

    def fetch(
        self, key: Key, field: str | None = None, filter_: str | None = None, blocks: bool = False
    ) -> FetchResult:
        if (table := self.table()) is not None:
            return table.fetch(key, field, filter_, blocks)
        self._not_a_group()
        if filter_:
            self._no_remote_tables()
        return self.remote.fetch(self.root, self.relpath, key, field, filter_, blocks)

    def query_table(self, key: Key, query: TableQuery) -> FetchResult:
        if (table := self.table()) is not None:
            return table.query_table(key, query)
        self._no_remote_tables()
        return super().query_table(key, query)

    def table_window(self, start: int, stop: int, query: TableQuery) -> tuple[np.ndarray, int]:
        if (table := self.table()) is not None:
            return table.table_window(start, stop, query)
        return super().table_window(start, stop, query)

    def _no_remote_tables(self) -> None:
        """A table its publisher serves as a file (strings, nullable columns...) is not queried."""
        if self.relpath.endswith(B2Z_SUFFIX):
            self.remote.dataset(self.root, self.relpath)  # 404 when there is none
            raise BadRequest(
                f"{self.logical} is a table its publisher serves as a file only (it has "
                "columns other than plain arrays): download it, or copy it to a local root"
            )

    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        if (table := self.table()) is not None:
            return table.chunk(nchunk, if_match)
        self._not_a_group()
        return self.remote.chunk(self.root, self.relpath, nchunk, if_match)

    def download(self) -> Download:
        if (table := self.table()) is not None:
            return table.download()
        self._not_a_group()
        return self.remote.download(self.root, self.relpath)


class RemoteRoot(Root):
    """A root a publisher announced; reading it follows it first."""

    local = False

    def __init__(self, remote: RemoteRoots, name: str, runner: Runner | None = None) -> None:
        self.remote = remote
        self.name = name
        self.runner = runner  # the computing pool, where table queries run

    def listing(self, relpath: str) -> list[str]:
        if relpath and self.dataset(relpath).table() is not None:
            return [relpath.rsplit("/", 1)[-1]]  # a table is one dataset, not its members
        return self.remote.listing(self.name, relpath)

    def dataset(self, relpath: str) -> RemoteDataset:
        return RemoteDataset(self.remote, self.name, relpath, self.runner)
