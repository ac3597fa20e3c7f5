"""What the two daemons (`cat2pub`, `cat2sub`) share: their HTTP server, signals, errors.

Imported only by the servers: it loads waitress.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .config import ConfigError, parse_http
from .connection_limits import ConnectionLimits, limit_per_client
from .falcon_app import tune_waitress, waitress_options
from .logs import setup_logging

Settings = TypeVar("Settings")


def http_server(
    app: Any,
    http: str,
    threads: int,
    ident: str,
    limits: ConnectionLimits | None = None,
    **options: Any,
) -> Any:
    """A tuned waitress server for `app` on `http` (HOST:PORT or a Unix socket path).

    It listens once made: clients may connect before it runs.
    """
    limits = limits or ConnectionLimits()
    import waitress

    address = parse_http(http)
    listen = (
        {"unix_socket": address}
        if isinstance(address, str)
        else {"host": address[0], "port": address[1]}
    )
    server = waitress.create_server(
        app,
        threads=threads,
        ident=ident,
        **limits.waitress_options(),
        **waitress_options(),
        **options,
        **listen,
    )
    tune_waitress(server)
    limit_per_client(server, limits.per_client)
    return server


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGINT into `SystemExit(0)`, which the serving loop ends on."""

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run(
    program: str,
    load_settings: Callable[[], Settings],
    serve: Callable[[Settings], None],
    loglevel: Callable[[Settings], str],
    error_status: int,
) -> int:
    """Load the settings, set up logging and serve; a bad setting is one line on stderr."""
    try:
        settings = load_settings()
        setup_logging(loglevel(settings))
        if logging.getLogger().level > logging.DEBUG:
            # pika narrates every connection step at INFO; keep that for debugging.
            logging.getLogger("pika").setLevel(logging.WARNING)
        serve(settings)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return error_status
    return 0
