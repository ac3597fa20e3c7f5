"""The web GUI: server-rendered pages over the same data and rights as the REST API."""

from .routes import register
from .site import Web

__all__ = ["Web", "register"]
