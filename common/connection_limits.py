"""Connection limits of the waitress servers: many idle or slow clients never lock others out.

- `max_connections`: open connections in all (waitress's `connection_limit`,
  default 100 there). Polled with `poll()`, not `select()`, which cannot watch
  more than 1024 sockets.
- `per_client`: open connections from one address; one more is closed as soon
  as it is accepted. Behind a reverse proxy every client has the proxy's
  address: set it to 0 (no limit) and let the proxy limit clients.
- `idle_timeout`: seconds a connection may stay silent without a request being
  served (a half-sent request, an idle keep-alive) before it is closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 1000
    per_client: int = 64
    idle_timeout: int = 30

    def waitress_options(self) -> dict[str, Any]:
        """The `waitress.create_server` settings for these limits."""
        return {
            "connection_limit": self.max_connections,
            "channel_timeout": self.idle_timeout,
            # Idle connections are looked for this often: they live at most ~4/3 of the timeout.
            "cleanup_interval": max(1, self.idle_timeout // 3),
            "asyncore_use_poll": True,
        }


def limit_per_client(server: Any, per_client: int) -> None:
    """Close a new connection when its address already holds `per_client` (0: no limit)."""
    if per_client <= 0 or getattr(server.adj, "unix_socket", None):
        return  # on a Unix socket every client is the proxy in front
    base = server.channel_class

    class PerClientChannel(base):
        def __init__(self, server, sock, addr, adj, map=None):
            super().__init__(server, sock, addr, adj, map)
            host = addr[0] if isinstance(addr, tuple) and addr else None
            if host is None:
                return
            same = sum(
                1
                for channel in list(server.active_channels.values())
                if isinstance(channel.addr, tuple) and channel.addr[:1] == (host,)
            )
            if same > per_client:
                log.info("closing a connection from %s: %d open already", host, per_client)
                self.handle_close()

    server.channel_class = PerClientChannel
