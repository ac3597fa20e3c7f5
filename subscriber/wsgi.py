"""The subscriber as a module-level WSGI app, for production servers.

    gunicorn 'caterva2.subscriber.wsgi:app' --worker-class gthread --workers 1 --threads 8

Settings come as `cat2sub` reads them: the `[subscriber]` section (or
`[subscriber.<CATERVA2_ID>]`) of the file named by `CATERVA2_CONF` (default
`./caterva2.toml`), `CATERVA2_SECRET` (also from `.env`), and the broker from
`CATERVA2_BROKER_URL`, else the file's `[broker]` `url`. The state (store,
broker consumer) is closed when the process exits. See bench/README.md for
why and how to run it.
"""

from __future__ import annotations

import atexit
import os

import falcon

from ..common.config import load_config, section
from ..common.logs import setup_logging
from .app import create_subscriber
from .settings import build_settings


def make_app() -> falcon.App:
    """Build the subscriber from the configuration and the environment."""
    conf = load_config(os.environ.get("CATERVA2_CONF"))
    ident = os.environ.get("CATERVA2_ID") or None
    settings = build_settings(section(conf, "subscriber", ident), {})
    settings.broker_url = os.environ.get("CATERVA2_BROKER_URL") or conf.get("broker", {}).get("url")
    if ident and not settings.subscriber_id:
        settings.subscriber_id = ident
    settings.check()
    setup_logging(settings.loglevel)
    subscriber = create_subscriber(settings)
    atexit.register(subscriber.close)
    return subscriber.app


app = make_app()
