"""The subscriber as a module-level WSGI app, for `python -m bench --server gunicorn`.

Settings come from the file named by `CATERVA2_CONF` (default `./caterva2.toml`),
section `[subscriber]` (or `[subscriber.<CATERVA2_ID>]`), and the environment
(`CATERVA2_SECRET`, `CATERVA2_BROKER_URL`), as `cat2sub` reads them. This is
the content proposed for `caterva2.subscriber.wsgi`; see bench/README.md.
"""

from __future__ import annotations

import atexit
import os

from caterva2.common.config import load_config, section
from caterva2.common.logs import setup_logging
from caterva2.subscriber.app import create_subscriber
from caterva2.subscriber.settings import build_settings


def make_app():
    """Build the subscriber from the configuration; close its state at exit."""
    conf = load_config(os.environ.get("CATERVA2_CONF"))
    settings = build_settings(section(conf, "subscriber", os.environ.get("CATERVA2_ID")), {})
    settings.broker_url = os.environ.get("CATERVA2_BROKER_URL") or conf.get("broker", {}).get("url")
    settings.check()
    setup_logging(settings.loglevel)
    subscriber = create_subscriber(settings)
    atexit.register(subscriber.close)
    return subscriber.app


app = make_app()
