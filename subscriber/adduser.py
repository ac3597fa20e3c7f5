"""`cat2adduser`: add a user straight into the subscriber's store (no server needed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..common.config import ConfigError, load_config, section
from ..common.errors import BadRequest
from ..common.logs import setup_logging
from . import passwords
from .settings import DEFAULT_STATEDIR
from .store import Store


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `cat2adduser`."""
    parser = argparse.ArgumentParser(prog="cat2adduser", description="Add a Caterva2 user")
    parser.add_argument("username", help="the user's email address")
    parser.add_argument("password", nargs="?", help="password (default: 8 random letters)")
    parser.add_argument("--superuser", "-S", action="store_true", help="make a superuser")
    parser.add_argument("--statedir", help="subscriber state directory")
    parser.add_argument("--conf", help="configuration file (default: ./caterva2.toml)")
    parser.add_argument("--id", help="use the [subscriber.ID] section")
    parser.add_argument(
        "--loglevel", default="warning", help="debug, info, warning (default) or error"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup_logging(args.loglevel)
        conf = section(load_config(args.conf), "subscriber", args.id)
        statedir = Path(args.statedir or conf.get("statedir", DEFAULT_STATEDIR))
        password = args.password or passwords.random_password()
        store = Store(statedir)
        if store.get_user_by_email(args.username) is not None:
            print(f"User {args.username} already exists: left untouched", file=sys.stderr)
            return 0
        store.add_user(args.username, password, args.superuser)
    except BadRequest as exc:
        print(f"cat2adduser: error: {exc.detail}", file=sys.stderr)
        return 1
    except (ConfigError, OSError, RuntimeError) as exc:
        print(f"cat2adduser: error: {exc}", file=sys.stderr)
        return 1
    print(f"Password: {password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
