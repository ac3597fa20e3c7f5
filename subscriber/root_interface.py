"""One interface for every kind of root the subscriber serves, and the typed answers of its reads.

The REST routes (`api_data`) and the web pages (`web.access`) reach datasets
only through `Root` and `Dataset`: a local directory root, a remote root read
through the chunk cache, and, inside local roots, saved lazy expressions and
unfolded HDF5 datasets (shells) are implementations of the same two classes.
`tests/root_conformance.py` holds the tests every implementation passes.

Reads answer typed results (`FetchResult`); `http_answers` maps each type to
its HTTP answer and `web.access` to values for the pages, so a new kind of
root adds an implementation here, not a branch in every route.
"""

from __future__ import annotations

import abc
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np

from ..common.errors import BadRequest
from ..common.slices import Key


@dataclass(frozen=True)
class TableQuery:
    """What to keep of a table: rows where `filter` holds, sorted by `sort_by`, then a row range."""

    filter: str | None = None
    sort_by: tuple[str, ...] = ()  # column names, the primary key first
    ascending: bool = True


# Results are built to be sent at once: fast compression beats a better ratio here.
RESULT_CPARAMS = blosc2.CParams(codec=blosc2.Codec.LZ4, clevel=1, nthreads=1)
# Array results go as NumPy's .npy to clients that ask for it (`Accept: application/x-npy`)
# up to this size: building a Blosc2 frame costs a fixed ~0.3 ms, dear for a small
# result, while bigger ones gain from being compressed on the wire.
NPY_TYPE = "application/x-npy"
NPY_LIMIT = 1 << 20
FRAME_TYPE = "application/octet-stream"


def frame_of_array(values: np.ndarray) -> bytes:
    """A new NDArray cframe holding `values`."""
    return blosc2.asarray(np.asarray(values), cparams=RESULT_CPARAMS).to_cframe()


@dataclass
class ArrayResult:
    """A fetched array selection, as values: encoded once the client's wishes are known."""

    values: np.ndarray

    def encode(self, npy: bool = False) -> tuple[bytes, str]:
        """(body, content type): .npy when `npy` and small enough, else a Blosc2 frame."""
        if npy and self.values.nbytes <= NPY_LIMIT and not self.values.dtype.hasobject:
            out = io.BytesIO()
            np.lib.format.write_array(out, self.values, allow_pickle=False)
            return out.getvalue(), NPY_TYPE
        return frame_of_array(self.values), FRAME_TYPE

    def frame(self) -> bytes:
        """The values as a new NDArray frame (what upstream clients get)."""
        return frame_of_array(self.values)


@dataclass
class BlockStream:
    """An array selection answered as its stored blocks (`common.block_stream`)."""

    pieces: Iterator[bytes]
    length: int | None  # known when every chunk's size is known before it is read


@dataclass
class WholeFile:
    """A fetch answered with a stored file of a local root, as it is on disk."""

    path: Path


@dataclass
class StreamedFile:
    """A whole Blosc2 container streamed from elsewhere (the cache, a worker's temporary file)."""

    filename: str | None
    length: int | None
    blocks: Iterator[bytes]


@dataclass
class Download:
    """The content `/api/download` streams."""

    filename: str
    content_type: str | None
    blocks: Iterator[bytes]
    length: int | None


# What `Dataset.fetch` answers; `bytes` is a new SChunk (or NDArray) frame.
FetchResult = ArrayResult | BlockStream | WholeFile | StreamedFile | bytes


class Dataset(abc.ABC):
    """One dataset of any kind of root, already resolved with its reader's rights.

    Errors are `common.errors` exceptions: 404 for a missing dataset, 400 for a
    bad selection, 412 for a version that no longer matches, 503 when the data
    cannot be had now.
    """

    logical: str

    @abc.abstractmethod
    def info(self) -> tuple[dict, str | None]:
        """The `/api/info` object, and the ETag of the version it describes (None: no version)."""

    @abc.abstractmethod
    def fetch(
        self,
        key: Key,
        field: str | None = None,
        filter_: str | None = None,
        blocks: bool = False,
    ) -> FetchResult:
        """The selection `key` (a field of it, or the rows `filter_` keeps).

        `blocks`: the client takes big array selections as stored blocks.
        """

    def query_table(self, key: Key, query: TableQuery) -> FetchResult:
        """The rows of a table a filter and a sort keep, then the row range `key`.

        Only tables (`ctables.TableDataset`) sort; every other dataset says so.
        """
        raise BadRequest(f"{self.logical} is not a table: only tables sort (sort_by)")

    def table_window(self, start: int, stop: int, query: TableQuery) -> tuple[np.ndarray, int]:
        """Rows [start, stop) of what `query` keeps of a table, as values, and how many it keeps."""
        raise BadRequest(f"{self.logical} is not a table")

    @abc.abstractmethod
    def chunk(self, nchunk: int, if_match: str | None = None) -> tuple[bytes, str | None]:
        """The compressed chunk `nchunk` and the version it is of; 412 unless it is `if_match`."""

    @abc.abstractmethod
    def download(self) -> Download:
        """The whole content: Blosc2 frames as stored, regular files decompressed."""


class Root(abc.ABC):
    """A root as one reader sees it: its listing and its datasets."""

    name: str
    local: bool

    @abc.abstractmethod
    def listing(self, relpath: str) -> list[str]:
        """Paths of the datasets below `relpath` (relative to it), or the name of one dataset."""

    @abc.abstractmethod
    def dataset(self, relpath: str) -> Dataset:
        """The dataset at `relpath`; a missing one may raise 404 here or at its first read."""
