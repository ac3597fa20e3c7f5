"""`cat2pub NAME ROOTDIR`: publish a directory as a root, over RabbitMQ and HTTP."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..broker.connection import (
    BrokerConfigError,
    parameters,
    redact,
    resolve_url,
    use_ca_file,
)
from ..common import paths
from ..common.config import (
    ConfigError,
    ReadKeys,
    load_config,
    parse_http,
    section,
    warn_unknown,
)
from ..common.daemon import http_server, run, stop_on_signals
from ..common.errors import BadRequest
from ..common.paths import is_hdf5

log = logging.getLogger("caterva2.publisher")

DEFAULT_HTTP = "localhost:8001"
DEFAULT_HEARTBEAT = 10.0
DEFAULT_RESCAN = 60.0


@dataclass
class PublisherSettings:
    """Everything `cat2pub` needs to run."""

    name: str
    root: Path
    http: str
    url: str
    statedir: Path
    broker_url: str
    heartbeat: float = DEFAULT_HEARTBEAT
    rescan: float = DEFAULT_RESCAN
    loglevel: str = "warning"
    threads: int = 8
    change_log: int = 10_000
    """Changes kept for subscribers that missed some (older: they take a snapshot)."""


def check_root_name(name: str) -> str:
    """A root name is a routing key without wildcards, never a special root (`@...`)."""
    try:
        return paths.check_root_name(name)
    except BadRequest as exc:
        raise ConfigError(str(exc.detail)) from None


def default_url(http: str) -> str:
    """The URL subscribers use when none is configured: `http://<http>`."""
    address = parse_http(http)
    if isinstance(address, str):
        raise ConfigError("listening on a Unix socket: give the public URL with --url")
    host, port = address
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()  # a wildcard address is no use to a remote subscriber
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cat2pub`."""
    parser = argparse.ArgumentParser(
        prog="cat2pub",
        description="Caterva2 publisher: serve a directory or an HDF5 file as a root",
    )
    parser.add_argument("name", nargs="?", help="root name (or [publisher] name)")
    parser.add_argument(
        "root", nargs="?", help="directory or .h5/.hdf5 file to publish (or [publisher] root)"
    )
    parser.add_argument("--http", help=f"HOST:PORT to listen on (default {DEFAULT_HTTP})")
    parser.add_argument("--url", help="URL subscribers use to reach us (default http://<http>)")
    parser.add_argument("--statedir", help="state directory (default _caterva2/pub.<NAME>)")
    parser.add_argument("--broker", help="broker URL (default $CATERVA2_BROKER_URL or [broker])")
    parser.add_argument("--id", help="use the [publisher.ID] section of the configuration")
    parser.add_argument("--conf", help="configuration file (default ./caterva2.toml)")
    parser.add_argument("--heartbeat", type=float, help="seconds between root announcements")
    parser.add_argument(
        "--rescan",
        type=float,
        help=f"seconds between rescans of the root for missed changes, 0 = never "
        f"(default {DEFAULT_RESCAN:g})",
    )
    parser.add_argument(
        "--change-log",
        type=int,
        dest="change_log",
        help="changes kept for subscribers that missed some (default 10000)",
    )
    parser.add_argument("--loglevel", help="debug, info, warning (default) or error")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    return build_parser().parse_args(argv)


def load_settings(args: argparse.Namespace) -> PublisherSettings:
    """Settings from the command line, then `[publisher(.ID)]`, then defaults."""
    conf = load_config(args.conf)
    values: ReadKeys = ReadKeys(section(conf, "publisher", args.id))
    keys = ("name", "root", "http", "url", "statedir", "heartbeat", "rescan", "loglevel")
    for key in (*keys, "change_log"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if not values.get("name"):
        raise ConfigError("a root NAME is required (argument or [publisher] name)")
    if not values.get("root"):
        raise ConfigError("a ROOTDIR is required (argument or [publisher] root)")
    name = check_root_name(str(values["name"]))
    root = Path(values["root"]).expanduser()
    if not root.is_dir() and not (root.is_file() and is_hdf5(root.name)):
        why = "is not a directory nor an HDF5 file" if root.exists() else "does not exist"
        raise ConfigError(f"root directory {str(root)!r} {why}")
    http = str(values.get("http") or DEFAULT_HTTP)
    try:
        heartbeat = float(values.get("heartbeat", DEFAULT_HEARTBEAT))
    except (TypeError, ValueError):
        value = values["heartbeat"]
        raise ConfigError(f"heartbeat must be a number of seconds, not {value!r}") from None
    if heartbeat <= 0:
        raise ConfigError("heartbeat must be positive")
    try:
        rescan = float(values.get("rescan", DEFAULT_RESCAN))
    except (TypeError, ValueError):
        value = values["rescan"]
        raise ConfigError(f"rescan must be a number of seconds, not {value!r}") from None
    if rescan < 0:
        raise ConfigError("rescan must not be negative (0 turns periodic rescans off)")
    try:
        broker_url = resolve_url(args.broker, args.conf)
        use_ca_file(conf)
        parameters(broker_url)  # refuse a malformed URL now, not in a background thread
    except BrokerConfigError as exc:
        raise ConfigError(str(exc)) from exc
    change_log = values.get("change_log", 10_000)
    if isinstance(change_log, bool) or not isinstance(change_log, int) or change_log < 1:
        raise ConfigError(f"change_log must be a positive number of changes, not {change_log!r}")
    url = str(values.get("url") or default_url(http)).rstrip("/")
    try:
        paths.check_publisher_url(url)  # subscribers refuse announcements of any other kind
    except BadRequest as exc:
        raise ConfigError(str(exc.detail)) from None
    statedir = Path(values.get("statedir") or f"_caterva2/pub.{name}")
    loglevel = str(values.get("loglevel") or "warning")
    warn_unknown(values, "publisher")
    return PublisherSettings(
        name=name,
        root=root.resolve(),
        http=http,
        url=url,
        statedir=statedir,
        broker_url=broker_url,
        heartbeat=heartbeat,
        rescan=rescan,
        loglevel=loglevel,
        change_log=change_log,
    )


def _lock_statedir(statedir: Path) -> Any:
    """Hold a lock on the state directory: two publishers on one state would both announce."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: go without
        return None
    f = open(statedir / "lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise ConfigError(f"another cat2pub is using the state directory {statedir}") from None
    return f


def serve(settings: PublisherSettings) -> None:
    """Publish until SIGTERM or SIGINT, then announce the root offline and stop."""

    from .announcer import Announcer
    from .api import create_app
    from .root_adapters import DirectoryRoot
    from .state import State, StateError
    from .watcher import Watcher

    stop_on_signals()
    settings.statedir.mkdir(parents=True, exist_ok=True)
    lock = _lock_statedir(settings.statedir)
    try:
        state = State(settings.statedir, settings.change_log)
    except StateError as exc:
        raise ConfigError(str(exc)) from None
    state.bind_root(settings.name, str(settings.root))
    if settings.root.is_file():
        from .hdf5_root import HDF5FileRoot

        adapter = HDF5FileRoot(settings.root, settings.statedir / "cache")
    else:
        adapter = DirectoryRoot(
            settings.root, settings.statedir / "cache", exclude=[settings.statedir]
        )
    announcer = Announcer(
        settings.name,
        settings.url,
        adapter,
        state,
        settings.broker_url,
        heartbeat=settings.heartbeat,
        rescan_every=settings.rescan,
    )
    # Listen before announcing: subscribers come asking as soon as they hear of us.
    # Listings come from the announced index once the start-up scan has filled it.
    app = create_app(
        adapter,
        state=state,
        index=lambda: state.paths() if announcer.index_complete() else None,
    )
    server = http_server(app, settings.http, settings.threads, "caterva2-publisher")
    watcher = Watcher(
        adapter.watch_dir,
        announcer.notify,
        ignore=adapter.is_ignored,
        on_overflow=announcer.rescan,  # events were lost: compare the whole root
    )
    try:
        # Watch first, so nothing changing during the start-up scan is missed.
        watcher.start()
        announcer.start()
        log.warning(
            "cat2pub publishing %s from %s at %s (broker %s)",
            settings.name,
            settings.root,
            settings.url,
            redact(settings.broker_url),
        )
        print(
            f"cat2pub: publishing root {settings.name!r} from {settings.root} "
            f"at {settings.url} ({settings.http})",
            flush=True,
        )
        server.run()
    except SystemExit:
        pass
    finally:
        watcher.stop()
        announcer.stop()
        server.close()
        adapter.close()
        state.close()
        if lock is not None:
            lock.close()
        print("cat2pub: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cat2pub`."""
    args = parse_args(argv)
    return run("cat2pub", lambda: load_settings(args), serve, lambda s: s.loglevel, 1)


if __name__ == "__main__":
    sys.exit(main())
