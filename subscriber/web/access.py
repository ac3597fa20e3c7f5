"""What the pages read, through the same modules (and so the same rights) as the REST API."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from ...common.b2z_files import TABLE_VALID_ROWS
from ...common.errors import BadRequest, NotFound
from ...common.paths import join_logical, split_logical_path, stored_name
from ...common.slices import Key
from .. import containers, remote_containers, remote_tables
from ..auth import check_follow
from ..fetch_values import values_of
from ..file_ops import FileOps
from ..root_registry import RootRegistry
from ..store import User

ROOT_NOTES = {
    "@public": "Everybody reads; logged-in users write.",
    "@personal": "Your own datasets: nobody else sees them.",
    "@shared": "Read and written by every logged-in user.",
}
# Local roots bigger than this are watched through their folders' times only.
MAX_STAMPED_FILES = 20000


@dataclass
class RootEntry:
    """One root as the roots page shows it."""

    name: str
    local: bool
    note: str = ""
    url: str = ""
    subscribed: bool = True
    online: bool = True
    writable: bool = False
    count: int | None = None
    owner: str | None = None  # the broker user the root is pinned to
    refused: int = 0  # messages refused in its name
    cache: dict | None = None  # the chunk cache's figures (bytes, hit ratio, evictions)
    sync: dict | None = None  # a followed remote root's sync: state, datasets so far, seq


@dataclass
class Entry:
    """One dataset of a listing: its path relative to the folder shown, and its size."""

    relpath: str
    size: int | None = None
    kind: str = "file"
    # A container file's groups and leaves (`TreeItem`s), shown as an expandable folder.
    tree: list[TreeItem] | None = None

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]

    @property
    def folder(self) -> str:
        return self.relpath.rpartition("/")[0]


@dataclass
class TreeItem:
    """A group (with children) or a leaf in the tree of a container; `path` relative to it."""

    name: str
    path: str
    children: list[TreeItem] = field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return bool(self.children)


def leaf_tree(leaves: list[str]) -> list[TreeItem]:
    """The nested groups and leaves that a container's leaf paths make."""
    top: list[TreeItem] = []
    groups: dict[str, TreeItem] = {}
    for leaf in sorted(leaves):
        siblings, parts = top, leaf.split("/")
        for depth, name in enumerate(parts):
            path = "/".join(parts[: depth + 1])
            if depth == len(parts) - 1:
                siblings.append(TreeItem(name, path))
                break
            if path not in groups:
                groups[path] = TreeItem(name, path)
                siblings.append(groups[path])
            siblings = groups[path].children
    return top


# Containers whose tree is shown expanded in a listing; more are plain links.
MAX_TREES = 50


@dataclass
class Node:
    """What a logical path is: a root, a folder, a dataset, or nothing."""

    path: str
    root: str
    relpath: str
    kind: str  # root | dir | group (a container, or a group in one) | file | missing | unsubscribed
    local: bool
    entries: list[Entry] = field(default_factory=list)
    in_container: bool = False  # a container file or inside one: read-only in the pages


def kind_of(name: str) -> str:
    """A short label for a logical file name."""
    lower = name.lower()
    if lower.endswith(".b2nd"):
        return "array"
    if lower.endswith(".b2frame"):
        return "frame"
    if lower.endswith((".h5", ".hdf5")):
        return "hdf5"
    return "file"


class Access:
    """Reads for the pages: local roots on disk, remote roots through the cache."""

    def __init__(self, registry: RootRegistry, ops: FileOps) -> None:
        self.registry = registry
        self.roots = registry.local
        self.ops = ops
        self.remote = registry.remote
        self.expressions = registry.expressions  # saved lazy expressions

    # Roots

    def is_remote(self, root: str) -> bool:
        return self.registry.is_remote(root)

    def root_entries(self, user: User | None, counts: bool = False) -> list[RootEntry]:
        """Local roots `user` sees, then every remote root publishers announced."""
        entries = [
            RootEntry(name, True, ROOT_NOTES.get(name, ""), writable=user is not None)
            for name in self.roots.names(user)
        ]
        if counts:
            for entry in entries:
                entry.count = len(self.roots.listing(self.roots.locate(entry.name, user)))
        if self.remote is not None:
            for name, row in sorted(self.remote.names().items()):
                entries.append(
                    RootEntry(
                        name,
                        False,
                        "Published by a remote site.",
                        url=row.get("http", ""),
                        subscribed=bool(row.get("subscribed")),
                        online=bool(row.get("online")),
                        count=(row.get("sync") or {}).get("datasets") if counts else None,
                        owner=row.get("owner"),
                        refused=row.get("refused") or 0,
                        cache=row.get("cache"),
                        sync=row.get("sync"),
                    )
                )
        return entries

    def writable(self, root: str, user: User | None) -> bool:
        """Whether `user` may upload, move or delete in `root`."""
        return user is not None and self.roots.is_local(root)

    def follow(self, root: str, user: User | None) -> None:
        if not self.is_remote(root) or not self.remote.is_known(root):
            raise NotFound(f"{root} not known by the broker")
        check_follow(user, self.roots.login)
        self.remote.follow(root)

    def unfollow(self, root: str, user: User | None) -> None:
        if not self.is_remote(root) or not self.remote.is_known(root):
            raise NotFound(f"{root} not known by the broker")
        check_follow(user, self.roots.login, unfollow=True)
        self.remote.unfollow(root)

    # Paths

    def node(self, path: str, user: User | None, list_entries: bool = True) -> Node:
        """Resolve a logical path (rights checked), with the datasets below it if a folder."""
        root, relpath = split_logical_path(path)
        path = join_logical(root, relpath)
        if self.is_remote(root):
            return self._remote_node(path, root, relpath, list_entries)
        found = containers.inside_container(
            relpath, lambda rel: self.roots.locate(join_logical(root, rel), user)
        )
        if found is not None:
            return self._container_node(path, *found)
        loc = self.roots.locate(path, user)
        if loc.path.is_file() and containers.is_container_name(relpath):
            return self._container_node(path, loc, "")
        if loc.path.is_file():
            return Node(path, root, relpath, "file", True)
        if not loc.path.is_dir():
            return Node(path, root, relpath, "missing", True)
        node = Node(path, root, relpath, "dir" if relpath else "root", True)
        if list_entries:
            trees = 0
            for name in self.roots.listing(loc):
                try:
                    size = (loc.path / stored_name(name)).stat().st_size
                except OSError:
                    size = None
                entry = Entry(name, size, kind_of(name))
                if containers.is_container_name(name) and trees < MAX_TREES:
                    inside = f"{relpath}/{name}" if relpath else name
                    entry.tree = self._tree(join_logical(root, inside), user)
                    trees += entry.tree is not None
                    entry.kind = "group" if entry.tree is not None else entry.kind
                node.entries.append(entry)
        return node

    def _tree(self, path: str, user: User | None) -> list[TreeItem] | None:
        """The tree of the container at `path`; None when it is not one or cannot be read."""
        try:
            container = containers.container_at(self.roots.locate(path, user))
        except (BadRequest, NotFound):
            return None
        return None if container is None else leaf_tree(container.leaves())

    def _container_node(self, path: str, loc: Any, inner: str) -> Node:
        """A container file, or a group or leaf inside one."""
        root, relpath = split_logical_path(path)
        try:
            container = containers.container_at(loc)
        except BadRequest:
            container = None
        if container is None:  # a CTable, a plain or unreadable file: shown as a file
            kind = "file" if not inner else "missing"
            return Node(path, root, relpath, kind, True)
        inner = inner.strip("/")
        if inner in container.leaf_set:
            return Node(path, root, relpath, "file", True, in_container=True)
        if not container.is_group(inner):
            return Node(path, root, relpath, "missing", True)
        node = Node(path, root, relpath, "group", True, in_container=True)
        node.entries = [Entry(leaf, None, "array") for leaf in container.leaves(inner)]
        return node

    def _remote_node(self, path: str, root: str, relpath: str, list_entries: bool) -> Node:
        if not self.remote.is_known(root):
            raise NotFound(f"Root {root} does not exist")
        if root not in self.remote.store.subscriptions():
            return Node(path, root, relpath, "unsubscribed", False)
        etags = self.remote.store.dataset_etags(root)
        inside = remote_containers.in_container(relpath)
        if relpath in etags:
            return Node(path, root, relpath, "file", False, in_container=inside)
        if f"{relpath}/{TABLE_VALID_ROWS}" in etags and self._is_table(root, relpath):
            return Node(path, root, relpath, "file", False)  # a table: one dataset, as locally
        prefix = relpath + "/" if relpath else ""
        below = sorted(p for p in etags if p.startswith(prefix))
        if relpath and not below:
            return Node(path, root, relpath, "missing", False)
        if relpath and remote_containers.is_group_path(relpath):
            # A container (its leaves announced one by one) or a group inside one.
            node = Node(path, root, relpath, "group", False, in_container=True)
            if list_entries:
                node.entries = [Entry(p[len(prefix) :], None, "array") for p in below]
            return node
        node = Node(path, root, relpath, "dir" if relpath else "root", False)
        if list_entries:
            self._remote_entries(node, root, prefix, below)
        return node

    def _remote_entries(self, node: Node, root: str, prefix: str, below: list[str]) -> None:
        """A remote folder's datasets; a container's leaves make one entry, with its tree."""
        trees: dict[str, list[str]] = {}
        for p in below:
            name = p[len(prefix) :]
            split = remote_containers.split_container(name)
            if split is not None and self._is_table(root, prefix + split[0]):
                if not node.entries or node.entries[-1].relpath != split[0]:
                    node.entries.append(Entry(split[0], None, "file"))
                continue
            if split is not None:
                if split[0] not in trees:
                    trees[split[0]] = []
                    node.entries.append(Entry(split[0], None, "group"))
                trees[split[0]].append(split[1])
                continue
            found = self.remote.store.dataset(root, p)
            meta = found[1] if found else {}
            size = meta.get("schunk", meta).get("cbytes") if isinstance(meta, dict) else None
            node.entries.append(Entry(name, size, kind_of(p)))
        for entry in node.entries:
            if entry.relpath in trees and len(trees) <= MAX_TREES:
                entry.tree = leaf_tree(trees[entry.relpath])

    def _is_table(self, root: str, relpath: str) -> bool:
        """Whether a remote path is a table its publisher serves as its columns."""
        return remote_tables.announced_table(self.remote.store, root, relpath)

    def info(self, path: str, user: User | None) -> dict:
        """The `/api/info` object of a dataset."""
        return self.registry.dataset(path, user).info()[0]

    # Data

    def read(
        self,
        path: str,
        user: User | None,
        key: Key,
        field_: str | None = None,
        filter_: str | None = None,
    ) -> Any:
        """A selection as NumPy values (arrays) or bytes (byte streams), read as `/api/fetch`."""
        return values_of(self.registry.dataset(path, user).fetch(key, field_, filter_))

    # Changes

    def stamp(self, path: str, user: User | None) -> str:
        """A short token that changes whenever anything below `path` changes."""
        root, relpath = split_logical_path(path)
        digest = hashlib.blake2b(digest_size=8)
        if self.is_remote(root):
            row = self.remote.store.remote_root(root) or {}
            subscribed = root in self.remote.store.subscriptions()
            digest.update(f"{row.get('online')}|{subscribed}".encode())
            prefix = relpath + "/" if relpath else ""
            for p, etag in sorted(self.remote.store.dataset_etags(root).items()):
                if not relpath or p == relpath or p.startswith(prefix):
                    digest.update(f"{p}\0{etag}\n".encode())
            return digest.hexdigest()
        # Inside a container file, what changes is the file.
        found = containers.inside_container(
            relpath, lambda rel: self.roots.locate(join_logical(root, rel), user)
        )
        loc = found[0] if found else self.roots.locate(join_logical(root, relpath), user)
        if loc.path.is_file():
            st = loc.path.stat()
            digest.update(f"{st.st_mtime_ns}|{st.st_size}".encode())
            return digest.hexdigest()
        if not loc.path.is_dir():
            return "missing"
        count = 0
        for dirpath, dirnames, filenames in os.walk(loc.path):
            dirnames.sort()
            digest.update(dirpath.encode())
            count += len(filenames)
            if count > MAX_STAMPED_FILES:
                digest.update(str(os.stat(dirpath).st_mtime_ns).encode())
                continue
            for name in sorted(filenames):
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except OSError:
                    continue
                digest.update(f"{name}\0{st.st_mtime_ns}|{st.st_size}\n".encode())
        return digest.hexdigest()

    def roots_stamp(self, user: User | None) -> str:
        """A token that changes when a remote root appears, goes offline or gets followed."""
        digest = hashlib.blake2b(digest_size=8)
        for entry in self.root_entries(user):
            digest.update(f"{entry.name}|{entry.subscribed}|{entry.online}\n".encode())
        return digest.hexdigest()
