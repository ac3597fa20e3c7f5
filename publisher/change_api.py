"""The publisher's replication routes: changes since a sequence number, and snapshots.

- `GET /api/changes?since=S[&limit=N]` → msgpack
  `{"seq": current, "changes": [[seq, path, kind, etag, mtime, meta], ...], "more": bool}`:
  the changes after S, in order (at most `limit` of them; `more` says whether
  to ask again from the last one's seq).  410 Gone when the change log no longer
  holds them all: the subscriber takes a snapshot instead.
- `GET /api/snapshot[?after=PATH&limit=N]` → msgpack
  `{"seq": S, "datasets": [[path, etag, mtime, meta JSON text], ...], "next": PATH | None}`:
  every announced dataset, by path, one page at a time; each page is the root's
  state at its `seq` or later, so the changes after the first page's `seq`
  bring a paged snapshot up to date.

Both describe only announced versions (the publisher's state), never a file
being written.
"""

from __future__ import annotations

import falcon
import msgpack

from ..common.errors import BadRequest
from ..common.falcon_app import set_body
from .state import State

MSGPACK = "application/msgpack"
MAX_CHANGES = 5_000
MAX_SNAPSHOT = 5_000
"""Entries per page at most: each page is built in memory, at a few hundred bytes an entry."""


def _int_param(req: falcon.Request, name: str, default: int | None, maximum: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"{name} is required (a non-negative integer)")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadRequest(f"{name} must be a non-negative integer, not {raw!r}")
    return min(value, maximum)


def _msgpack(resp: falcon.Response, body: dict) -> None:
    resp.content_type = MSGPACK
    set_body(resp, msgpack.packb(body, use_bin_type=True))


class ChangesResource:
    def __init__(self, state: State) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        since = _int_param(req, "since", None, 2**63 - 1)
        limit = max(1, _int_param(req, "limit", MAX_CHANGES, MAX_CHANGES))
        found = self.state.changes_since(since, limit)
        if found is None:
            raise falcon.HTTPGone(
                description=f"changes since {since} are no longer kept (now at {self.state.seq}): "
                "take a snapshot"
            )
        seq, changes, more = found
        _msgpack(resp, {"seq": seq, "changes": [list(c) for c in changes], "more": more})


class SnapshotResource:
    def __init__(self, state: State) -> None:
        self.state = state

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        after = req.get_param("after") or ""
        limit = max(1, _int_param(req, "limit", MAX_SNAPSHOT, MAX_SNAPSHOT))
        seq, page, next_after = self.state.snapshot(after, limit)
        _msgpack(resp, {"seq": seq, "datasets": [list(d) for d in page], "next": next_after})


def add_routes(app: falcon.App, state: State) -> None:
    """Serve the change log and snapshots of `state`."""
    app.add_route("/api/changes", ChangesResource(state))
    app.add_route("/api/snapshot", SnapshotResource(state))
