"""The web GUI: server-rendered pages over the same data and rights as the REST API."""

from .pages import Web, register

__all__ = ["Web", "register"]
