"""Caterva2: on-demand access to Blosc2 and HDF5 datasets."""

from caterva2.client import BasicAuth, Client, Dataset, File, Group, Root
from caterva2.http_errors import APIError
from caterva2.ingestion import ChunkAlreadyWritten
from caterva2.tables import Table

__version__ = "2025.8.7"

# Where a subscriber listens by default.
sub_urlbase_default = "http://localhost:8000"

__all__ = [
    "APIError",
    "BasicAuth",
    "ChunkAlreadyWritten",
    "Client",
    "Dataset",
    "File",
    "Group",
    "Root",
    "Table",
    "__version__",
    "sub_urlbase_default",
]
