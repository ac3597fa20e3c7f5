"""The values of a fetch result, as NumPy (arrays) or bytes (byte streams).

For what reads values itself (the GUI's pages, coordinates gathered from a box)
rather than sending the result as it is.
"""

from __future__ import annotations

import functools
from typing import Any

import blosc2
import numpy as np

from . import datasets
from .root_interface import ArrayResult, StreamedFile, WholeFile


@functools.singledispatch
def values_of(result: object) -> Any:
    """The values of a fetch result: NumPy for arrays, bytes for byte streams."""
    return decode_frame(bytes(result))


@values_of.register
def _(result: ArrayResult) -> Any:
    return result.values


@values_of.register
def _(result: WholeFile) -> Any:
    obj = datasets.open_container(result.path)
    return np.asarray(obj[()]) if isinstance(obj, blosc2.NDArray) else bytes(obj[:])


@values_of.register
def _(result: StreamedFile) -> Any:
    return decode_frame(b"".join(result.blocks))


def decode_frame(frame: bytes) -> Any:
    """An NDArray frame as NumPy values, or an SChunk frame as bytes."""
    try:
        array = blosc2.ndarray_from_cframe(frame)
    except Exception:
        return bytes(blosc2.schunk_from_cframe(frame)[:])
    return np.asarray(array[()])
