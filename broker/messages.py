"""Message types exchanged over RabbitMQ, and their msgpack codec."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

import msgpack

from ..common.errors import BadRequest
from ..common.paths import check_publisher_url, check_remote_path, check_root_name

VERSION = 1
"""Current message format version; decode() rejects any other."""
MAX_MESSAGE_BYTES = 1 << 20
"""Bigger bodies are refused before decoding (a change's metadata is a few KB)."""

CHANGE_KINDS = frozenset({"created", "modified", "deleted"})


class MessageError(ValueError):
    """Raised when bytes cannot be decoded into a valid message."""


@dataclass(frozen=True)
class ChangeMessage:
    """One dataset change in a root: created, modified or deleted."""

    root: str
    path: str
    kind: str
    etag: str | None = None
    mtime: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    v: int = VERSION
    seq: int | None = None
    """The root's change sequence number of this change; None from publishers before it."""
    sender: str | None = field(default=None, compare=False)
    """The broker user that published it (validated `user_id`); never taken from the body."""

    type: ClassVar[str] = "change"

    def __post_init__(self) -> None:
        _check_name("root", self.root)
        _check_name("path", self.path)
        if self.kind not in CHANGE_KINDS:
            raise MessageError(f"kind must be one of {sorted(CHANGE_KINDS)}, not {self.kind!r}")
        _check_optional_str("etag", self.etag)
        if self.mtime is not None:
            # bool is an int subclass; reject it so a bug upstream is not silently a timestamp
            if isinstance(self.mtime, bool) or not isinstance(self.mtime, int | float):
                raise MessageError(f"mtime must be a number or None, not {self.mtime!r}")
            if not math.isfinite(self.mtime):
                raise MessageError(f"mtime must be finite, not {self.mtime!r}")
        if not isinstance(self.meta, dict):
            raise MessageError(f"meta must be a map, not {type(self.meta).__name__}")
        _check_seq(self.seq)
        _check_version(self.v)
        _check_valid(check_root_name, self.root)
        _check_valid(check_remote_path, self.path)


@dataclass(frozen=True)
class RootAnnouncement:
    """A publisher saying that its root exists, where to fetch it, and whether it is up."""

    root: str
    url: str
    etag: str | None = None
    online: bool = True
    v: int = VERSION
    seq: int | None = None
    """The root's last change sequence number; None from publishers before sequences."""
    sender: str | None = field(default=None, compare=False)
    """The broker user that published it (validated `user_id`); never taken from the body."""

    type: ClassVar[str] = "root"

    def __post_init__(self) -> None:
        _check_name("root", self.root)
        _check_name("url", self.url)
        _check_optional_str("etag", self.etag)
        if not isinstance(self.online, bool):
            raise MessageError(f"online must be a boolean, not {self.online!r}")
        _check_seq(self.seq)
        _check_version(self.v)
        _check_valid(check_root_name, self.root)
        _check_valid(check_publisher_url, self.url)


@dataclass(frozen=True)
class DiscoverRequest:
    """A subscriber (or cat2bro) asking every publisher to announce its root now."""

    reply_to: str
    v: int = VERSION

    type: ClassVar[str] = "discover"

    def __post_init__(self) -> None:
        _check_name("reply_to", self.reply_to)
        if len(self.reply_to) > 255:
            raise MessageError("reply_to must be at most 255 characters")
        _check_version(self.v)


Message = ChangeMessage | RootAnnouncement | DiscoverRequest

_TYPES: dict[str, type[Message]] = {
    cls.type: cls for cls in (ChangeMessage, RootAnnouncement, DiscoverRequest)
}


def encode(message: Message) -> bytes:
    """Encode a message as a msgpack map carrying its `type` and `v`."""
    if type(message) not in _TYPES.values():
        raise TypeError(f"not a caterva2 message: {message!r}")
    # Shallow: `asdict` would deep-copy the metadata, a third of a change's cost at start-up.
    # The broker tells who sent it, not the body: `sender` is left out.
    body = {f.name: getattr(message, f.name) for f in fields(message) if f.name != "sender"}
    return msgpack.packb({"type": message.type, **body}, use_bin_type=True)


def decode(data: bytes) -> Message:
    """Decode bytes made by encode(); raise MessageError if they are not a valid message."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes is over {MAX_MESSAGE_BYTES}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MessageError(f"not msgpack: {exc!r}") from exc
    if not isinstance(obj, dict):
        raise MessageError(f"expected a msgpack map, got {type(obj).__name__}")
    # Check the version first: a future format may change everything else.
    if "v" not in obj:
        raise MessageError("missing field 'v' (message version)")
    _check_version(obj["v"])
    kind = obj.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {kind!r}")
    # `sender` is set by the consumer from the broker's validated user_id, never by the body.
    known = {f.name: f for f in fields(cls) if f.name != "sender"}
    required = [
        n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [n for n in required if n not in obj]
    if missing:
        raise MessageError(f"{kind} message is missing field(s): {', '.join(missing)}")
    # Unknown keys are ignored so a same-version sender may add optional fields.
    try:
        return cls(**{k: obj[k] for k in known if k in obj})
    except MessageError:
        raise
    except (TypeError, ValueError) as exc:
        raise MessageError(f"invalid {kind} message: {exc}") from exc


def _check_version(v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise MessageError(f"version 'v' must be an integer, not {v!r}")
    if v != VERSION:
        raise MessageError(f"unknown message version {v} (this code speaks {VERSION})")


def _check_seq(seq: Any) -> None:
    # Optional: messages of publishers without sequences still decode (mixed deployments).
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise MessageError(f"seq must be a non-negative integer or None, not {seq!r}")


def _check_valid(check: Any, value: str) -> None:
    """Run a `common.paths` check; what it refuses is an invalid message."""
    try:
        check(value)
    except BadRequest as exc:
        raise MessageError(str(exc.detail)) from None


def _check_name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise MessageError(f"{name} must be a non-empty string, not {value!r}")


def _check_optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise MessageError(f"{name} must be a string or None, not {value!r}")
