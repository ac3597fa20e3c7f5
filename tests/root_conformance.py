"""The tests every kind of root passes (in the manner of zarr-python's store tests).

A kind subclasses `DatasetConformance` (listing, info, chunks, downloads, errors)
or, when it answers selections too, `SelectionConformance`, and provides the
fixture `kind`: a `Kind` whose root holds `DATASET` with the values `EXPECTED`
laid out in `CHUNKS`, and nothing at `MISSING`. The subscriber's kinds are
`root_interface.Root`s; the publisher's adapters are seen through a small
wrapper (`tests/test_root_conformance.py`), as they answer no selections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blosc2
import numpy as np
import pytest

from caterva2.common.errors import Caterva2Error, NotFound, PreconditionFailed

DATASET = "data/a.b2nd"
MISSING = "data/missing.b2nd"
# An edge chunk on the first axis: regions are clipped, chunks are not.
SHAPE, CHUNKS, BLOCKS = (25, 30), (10, 15), (5, 5)
EXPECTED = np.arange(np.prod(SHAPE), dtype=np.int64).reshape(SHAPE)
NCHUNKS = 6


def write_expected(path: Any) -> None:
    """`EXPECTED` as a Blosc2 file at `path`, in the conformance layout."""
    blosc2.asarray(EXPECTED, chunks=CHUNKS, blocks=BLOCKS, urlpath=str(path), mode="w")


@dataclass
class Kind:
    """One kind of root under test.

    `values_of` turns a fetch result into NumPy values; `versioned`: whether
    its datasets have versions (an ETag) that `If-Match` can name.
    """

    root: Any
    values_of: Callable[[Any], np.ndarray] | None = None
    versioned: bool = True


def client_error(exc: BaseException) -> bool:
    return isinstance(exc, Caterva2Error) and 400 <= exc.status < 500


def assembled(dataset: Any) -> np.ndarray:
    """The values rebuilt from every chunk the dataset serves, as a subscriber's cache does."""
    meta, _tag = dataset.info()
    # A saved expression's chunks are on its operands' grid, which its info does not give.
    chunks, blocks = tuple(meta.get("chunks") or CHUNKS), tuple(meta.get("blocks") or BLOCKS)
    array = blosc2.uninit(SHAPE, dtype=EXPECTED.dtype, chunks=chunks, blocks=blocks)
    for nchunk in range(array.schunk.nchunks):
        data, _tag = dataset.chunk(nchunk)
        array.schunk.update_chunk(nchunk, data)
    return array[()]


class DatasetConformance:
    """What every kind of root answers alike."""

    @pytest.fixture
    def kind(self) -> Kind:  # pragma: no cover - every subclass provides it
        raise NotImplementedError

    def test_listing_of_the_root_names_the_dataset(self, kind):
        assert DATASET in kind.root.listing("")

    def test_listing_of_a_folder_names_its_datasets_relative_to_it(self, kind):
        assert "a.b2nd" in kind.root.listing("data")

    def test_info_gives_shape_dtype_and_layout(self, kind):
        meta, _tag = kind.root.dataset(DATASET).info()
        assert tuple(meta["shape"]) == SHAPE
        assert np.dtype(meta["dtype"]) == EXPECTED.dtype
        if "chunks" in meta:  # stored kinds; a saved expression's layout is its operands'
            assert tuple(meta["chunks"]) == CHUNKS

    def test_the_chunks_together_hold_every_value(self, kind):
        np.testing.assert_array_equal(assembled(kind.root.dataset(DATASET)), EXPECTED)

    def test_a_chunk_out_of_range_is_a_client_error(self, kind):
        with pytest.raises(Caterva2Error) as caught:
            kind.root.dataset(DATASET).chunk(NCHUNKS)
        assert client_error(caught.value)

    def test_a_chunk_of_another_version_is_refused(self, kind):
        with pytest.raises(PreconditionFailed):
            kind.root.dataset(DATASET).chunk(0, '"not-this-version"')

    def test_the_version_info_names_is_the_one_chunks_are_of(self, kind):
        dataset = kind.root.dataset(DATASET)
        _meta, tag = dataset.info()
        if not kind.versioned:
            assert tag is None
            assert dataset.chunk(0, "*")[1] is None
            return
        assert tag
        data, chunk_tag = dataset.chunk(0, f'"{tag}"')
        assert chunk_tag == tag and data

    def test_a_download_is_the_whole_dataset(self, kind):
        content = kind.root.dataset(DATASET).download()
        body = b"".join(content.blocks)
        assert content.length in (None, len(body))
        array = blosc2.ndarray_from_cframe(body)
        np.testing.assert_array_equal(array[()], EXPECTED)

    def test_a_missing_dataset_is_not_found(self, kind):
        with pytest.raises(NotFound):
            kind.root.dataset(MISSING).info()

    def test_listing_a_missing_folder_is_empty_or_not_found(self, kind):
        try:
            assert kind.root.listing("no-such-folder") == []
        except NotFound:
            pass


class SelectionConformance(DatasetConformance):
    """What kinds that answer selections (`/api/fetch`) answer alike."""

    def fetched(self, kind: Kind, key: Any, **params: Any) -> np.ndarray:
        return np.asarray(kind.values_of(kind.root.dataset(DATASET).fetch(key, **params)))

    def test_a_whole_fetch_gives_every_value(self, kind):
        np.testing.assert_array_equal(self.fetched(kind, None), EXPECTED)

    @pytest.mark.parametrize(
        "key",
        [
            (slice(3, 17), slice(5, 29)),
            (slice(0, 25, 4), slice(None)),
            (7,),
            (24, slice(10, 12)),
            (slice(12, 12), slice(None)),
        ],
        ids=["box", "steps", "row", "edge-row", "empty"],
    )
    def test_a_selection_gives_the_values_it_names(self, kind, key):
        np.testing.assert_array_equal(self.fetched(kind, key), EXPECTED[key])

    def test_selections_wanted_as_blocks_give_the_same_values(self, kind):
        key = (slice(2, 23), slice(1, 30))
        np.testing.assert_array_equal(self.fetched(kind, key, blocks=True), EXPECTED[key])

    def test_an_index_out_of_range_is_a_client_error(self, kind):
        with pytest.raises(Caterva2Error) as caught:
            self.fetched(kind, (25,))
        assert client_error(caught.value)

    def test_field_and_filter_together_are_refused(self, kind):
        with pytest.raises(Caterva2Error) as caught:
            kind.root.dataset(DATASET).fetch(None, field="a", filter_="a > 1")
        assert client_error(caught.value)

    def test_a_field_of_an_array_without_fields_is_a_client_error(self, kind):
        with pytest.raises(Caterva2Error) as caught:
            self.fetched(kind, None, field="nope")
        assert client_error(caught.value)

    def test_a_missing_dataset_cannot_be_fetched(self, kind):
        with pytest.raises(NotFound):
            kind.root.dataset(MISSING).fetch(None)
