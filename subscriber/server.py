"""`cat2sub`: run the subscriber's REST API with waitress."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..broker.connection import BrokerConfigError, parameters, use_ca_file
from ..common.config import ConfigError, load_config, section
from .settings import (
    SubscriberSettings,
    build_settings,
    cache_quotas,
    root_owners,
    root_upstreams,
)

log = logging.getLogger("caterva2.subscriber")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cat2sub`."""
    parser = argparse.ArgumentParser(prog="cat2sub", description="Caterva2 subscriber")
    parser.add_argument("--conf", help="configuration file (default: ./caterva2.toml)")
    parser.add_argument("--id", help="use the [subscriber.ID] section of the configuration")
    parser.add_argument("--http", help="HOST:PORT or a Unix socket path to listen on")
    parser.add_argument("--statedir", help="state directory (default: _caterva2/sub)")
    parser.add_argument("--urlbase", help="public base URL of this subscriber")
    parser.add_argument("--quota", help="disk quota, e.g. 10G")
    parser.add_argument("--maxusers", type=int, help="maximum number of users")
    parser.add_argument(
        "--login",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="users, @personal and @shared (needs CATERVA2_SECRET; default: on)",
    )
    parser.add_argument(
        "--register",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="self-registration at /auth/register (default: off)",
    )
    parser.add_argument("--threads", type=int, help="HTTP worker threads (default 8)")
    parser.add_argument("--loglevel", help="debug, info, warning (default) or error")
    parser.add_argument("--broker", help="RabbitMQ URL: follow remote roots (default: standalone)")
    parser.add_argument(
        "--hand-over",
        metavar="ROOT[=USER]",
        help="give a remote root to the publisher of broker user USER (without =USER: to the "
        "next one that announces it), then exit; a running subscriber takes it at once",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    return build_parser().parse_args(argv)


def load_settings(args: argparse.Namespace) -> SubscriberSettings:
    """Settings from the file, then the flags given on the command line."""
    conf = load_config(args.conf)
    overrides = {
        k: getattr(args, k)
        for k in (
            "http",
            "statedir",
            "urlbase",
            "quota",
            "maxusers",
            "login",
            "register",
            "threads",
            "loglevel",
        )
    }
    settings = build_settings(section(conf, "subscriber", args.id), overrides)
    settings.broker_url = (
        args.broker or os.environ.get("CATERVA2_BROKER_URL") or conf.get("broker", {}).get("url")
    )
    settings.root_owners = root_owners(conf.get("root_owners", {}))
    settings.cache_quotas = cache_quotas(conf.get("cache_quotas", {}))
    settings.root_upstreams = root_upstreams(conf.get("upstreams", {}))
    if settings.broker_url:
        try:
            use_ca_file(conf)
            parameters(settings.broker_url)  # a malformed URL is refused now, not in a thread
        except BrokerConfigError as exc:
            raise ConfigError(str(exc)) from None
    if args.id and not settings.subscriber_id:
        settings.subscriber_id = args.id
    settings.check()
    return settings


def proxy_options(trusted_proxy: str | None) -> dict:
    """waitress settings taking the client's address and scheme from a trusted proxy."""
    if not trusted_proxy:
        return {}
    headers = {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"}
    return {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": headers}


def serve(settings: SubscriberSettings) -> None:
    """Serve until SIGTERM or SIGINT, then close cleanly."""
    from ..common.daemon import http_server, stop_on_signals
    from .app import create_subscriber

    subscriber = create_subscriber(settings)
    server = http_server(
        subscriber.app,
        settings.http,
        settings.threads,
        "caterva2",
        settings.connection_limits,
        url_prefix=settings.url_prefix,
        clear_untrusted_proxy_headers=True,
        **proxy_options(settings.trusted_proxy),
    )
    stop_on_signals()
    log.warning("cat2sub serving %s on %s", settings.statedir, settings.http)
    print(
        f"cat2sub: serving {settings.statedir} at {settings.urlbase} ({settings.http})", flush=True
    )
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        server.close()
        subscriber.close()
        print("cat2sub: stopped", flush=True)


def hand_over(args: argparse.Namespace) -> int:
    """Re-pin a remote root's owner in the store: the operator's explicit act (see README)."""
    from ..common.errors import BadRequest
    from ..common.paths import check_root_name
    from .store import Store

    root, _, user = args.hand_over.partition("=")
    try:
        check_root_name(root)
        conf = section(load_config(args.conf), "subscriber", args.id)
    except (BadRequest, ConfigError) as exc:
        print(f"cat2sub: error: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    statedir = build_settings(conf, {"statedir": args.statedir}).statedir
    if not Store(statedir).set_root_owner(root, user or None):
        print(f"cat2sub: error: root {root!r} is not known in {statedir}", file=sys.stderr)
        return 2
    who = f"broker user {user!r}" if user else "the next broker user that announces it"
    print(f"cat2sub: root {root} now belongs to {who}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ..common.daemon import run

    args = parse_args(argv)
    if args.hand_over:
        return hand_over(args)
    return run("cat2sub", lambda: load_settings(args), serve, lambda s: s.loglevel, 2)


if __name__ == "__main__":
    sys.exit(main())
