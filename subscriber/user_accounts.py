"""Adding and deleting users the same way from the REST API, the web pages and the GUI commands."""

from __future__ import annotations

import shutil

from ..common.errors import BadRequest, NotFound
from .local_roots import LocalRoots
from .store import Store, User


def users_full(store: Store, maxusers: int | None) -> bool:
    """Whether the subscriber has as many users as it may (`maxusers`; None or 0: no limit)."""
    return bool(maxusers) and store.count_users() >= maxusers


def check_room_for_user(store: Store, maxusers: int | None) -> None:
    """400 when no user can be added."""
    if users_full(store, maxusers):
        raise BadRequest(f"Only a maximum of {maxusers} users are allowed")


def delete_user(store: Store, roots: LocalRoots, email: str) -> User:
    """Delete a user and their `@personal` files; 400 naming them when there is no such user."""
    try:
        user = store.delete_user(email)
    except NotFound:
        raise BadRequest(f"Error in deleting {email}: UserNotExists") from None
    shutil.rmtree(roots.personal_dir(user), ignore_errors=True)
    return user
