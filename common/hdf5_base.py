"""What every part of the HDF5 conversion shares: its errors, h5py access and the types it maps.

Part of the HDF5 conversion (`hdf5_convert`), which re-exports these names.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

BLOSC2_FILTER_ID = 32026
MAX_DIMS = 8
META_KEY = "hdf5"
"""Metalayer with what Blosc2 cannot say about the HDF5 original (typed attributes, dtype)."""
GROUP_ATTRS_NAME = "!_attrs_.json.b2"
"""The file holding a group's attributes (listed as `!_attrs_.json`)."""
SHELL_FTYPE = "hdf5"
HEADER_SPECIAL_UNINIT = 4  # Blosc2 chunk header, byte 31 bits 4-6: an uninitialised chunk


class HDF5Error(Exception):
    """An HDF5 file, dataset or attribute that cannot be read or converted (a clear message)."""


class Unsupported(HDF5Error):
    """A dataset or attribute type with no Blosc2 counterpart."""


def h5py_module() -> Any:
    """h5py, with hdf5plugin loaded so that Blosc2 (and other) filters decode."""
    try:
        import h5py
        import hdf5plugin  # noqa: F401 - registers the filters
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise HDF5Error(f"HDF5 support needs h5py and hdf5plugin: {exc}") from None
    return h5py


def open_h5(path: str | os.PathLike, mode: str = "r") -> Any:
    """Open an HDF5 file; a corrupt, truncated or foreign file raises `HDF5Error`."""
    h5py = h5py_module()
    name = os.fspath(path)
    try:
        # No file locks: a reader must never stop the owner of the file from writing it.
        return h5py.File(name, mode, locking=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        raise HDF5Error(f"{os.path.basename(name)} is not a readable HDF5 file: {exc}") from None


def file_signature(path: str | os.PathLike) -> tuple[int, int, int]:
    """(inode, size, mtime_ns): changes whenever the file is rewritten or replaced."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


# -- types ----------------------------------------------------------------------


def check_dtype(dtype: np.dtype, h5py: Any | None = None) -> None:
    """Raise `Unsupported` unless Blosc2 can hold items of this HDF5 dtype."""
    h5py = h5py or h5py_module()
    if dtype.subdtype is not None:
        check_dtype(dtype.subdtype[0], h5py)
        return
    if dtype.names:
        for name in dtype.names:
            try:
                check_dtype(dtype.fields[name][0], h5py)
            except Unsupported as exc:
                raise Unsupported(f"field {name!r}: {exc}") from None
        return
    if dtype.kind == "O":
        if h5py.check_string_dtype(dtype) is not None:
            raise Unsupported("variable-length strings are not supported")
        if h5py.check_vlen_dtype(dtype) is not None:
            raise Unsupported("variable-length sequences are not supported")
        if h5py.check_ref_dtype(dtype) is not None:
            raise Unsupported("object and region references are not supported")
        raise Unsupported("object types are not supported")
    if dtype.kind == "V":
        raise Unsupported("opaque types are not supported")
    if dtype.kind not in "biufcS":
        raise Unsupported(f"the type {dtype} is not supported")


def split_dtype(dtype: np.dtype) -> tuple[np.dtype, tuple[int, ...]]:
    """(item dtype, extra axes): what NumPy makes of a top-level sub-array dtype."""
    if dtype.subdtype is not None:
        base, subshape = dtype.subdtype
        return np.dtype(base), tuple(subshape)
    return np.dtype(dtype), ()
