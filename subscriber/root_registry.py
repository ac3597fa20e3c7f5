"""Which root a logical path is in: the one place that tells local roots from remote ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..common.paths import split_logical_path
from .local_roots import LocalRoots
from .root_interface import Dataset, Root
from .root_kinds import LocalRoot, RemoteRoot
from .store import User

if TYPE_CHECKING:
    from .remote_roots import RemoteRoots
    from .saved_expressions import Expressions


class RootRegistry:
    """Every root this subscriber serves, as `root_interface.Root`s for one reader at a time."""

    def __init__(
        self,
        local: LocalRoots,
        remote: RemoteRoots | None = None,
        expressions: Expressions | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.expressions = expressions

    def is_remote(self, name: str) -> bool:
        return self.remote is not None and not self.local.is_local(name)

    def root(self, name: str, user: User | None) -> Root:
        """The root `name` for `user` (an unknown name is refused at its first use: 404)."""
        if self.is_remote(name):
            runner = self.expressions.runner if self.expressions is not None else None
            return RemoteRoot(self.remote, name, runner)
        return LocalRoot(self.local, name, user, self.expressions)

    def dataset(self, path: str, user: User | None) -> Dataset:
        """The dataset at a logical path, for `user`."""
        root, relpath = split_logical_path(path)
        return self.root(root, user).dataset(relpath)

    def listing(self, path: str, user: User | None) -> list[str]:
        """`/api/list`: the datasets below a logical path."""
        root, relpath = split_logical_path(path)
        return self.root(root, user).listing(relpath)

    def names(self, user: User | None) -> dict[str, dict]:
        """`/api/roots`: the local roots `user` sees, then every remote root announced."""
        roots = {
            name: {"name": name, "http": "", "subscribed": True} for name in self.local.names(user)
        }
        if self.remote is not None:
            roots.update(self.remote.names())
        return roots
