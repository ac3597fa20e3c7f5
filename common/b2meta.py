"""Metadata of Blosc2 containers as the `/api/info` JSON of the wire contract."""

from __future__ import annotations

import datetime
import math
from typing import Any

import blosc2
import numpy as np


def iso_mtime(mtime: float | None) -> str | None:
    """Seconds since the epoch → ISO 8601 UTC with microseconds and `Z`."""
    if mtime is None:
        return None
    dt = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dtype_to_str(dtype: np.dtype) -> str:
    """NumPy's `str(dtype)`: structured dtypes come out as a Python literal."""
    return str(np.dtype(dtype))


def str_to_dtype(text: str) -> np.dtype:
    """Inverse of `dtype_to_str`."""
    import ast

    try:
        return np.dtype(text)
    except (TypeError, ValueError):
        return np.dtype(ast.literal_eval(text))


def _enum_int(value: Any) -> int:
    return int(getattr(value, "value", value))


def cparams_dict(cparams: Any) -> dict[str, Any]:
    """Compression parameters with enums as integers, in the original's key order."""
    get = cparams.get if isinstance(cparams, dict) else lambda k: getattr(cparams, k)
    filters = [_enum_int(f) for f in get("filters")]
    filters_meta = [int(m) for m in get("filters_meta")]
    return {
        "codec": _enum_int(get("codec")),
        "codec_meta": int(get("codec_meta")),
        "clevel": int(get("clevel")),
        "filters": filters,
        "filters_meta": filters_meta,
        "typesize": int(get("typesize")),
        "blocksize": int(get("blocksize")),
        "nthreads": int(get("nthreads")),
        "splitmode": _enum_int(get("splitmode")),
        "tuner": _enum_int(get("tuner")),
        "use_dict": bool(get("use_dict")),
        "filters, meta": [[f, m] for f, m in zip(filters, filters_meta, strict=True) if f],
    }


def cparams_from_dict(params: dict[str, Any], nthreads: int | None = None) -> blosc2.CParams:
    """Blosc2 compression parameters from their info-JSON form (`cparams_dict`'s inverse).

    `nthreads` None keeps Blosc2's default.
    """
    codec = params["codec"]
    extra = {} if nthreads is None else {"nthreads": nthreads}
    return blosc2.CParams(
        codec=blosc2.Codec(codec) if codec < 32 else codec,  # 32 and up: user codecs
        codec_meta=params.get("codec_meta", 0),
        clevel=params["clevel"],
        typesize=params["typesize"],
        blocksize=params.get("blocksize", 0),
        splitmode=blosc2.SplitMode(params.get("splitmode", 3)),
        filters=[blosc2.Filter(f) for f in params["filters"]],
        filters_meta=params["filters_meta"],
        use_dict=params.get("use_dict", False),
        **extra,
    )


def to_jsonable(value: Any) -> Any:
    """Turn a vlmeta value (possibly NumPy or bytes) into a JSON value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def vlmeta_dict(schunk: blosc2.SChunk) -> dict[str, Any]:
    """User attributes (variable-length metalayers) as JSON values."""
    return {name: to_jsonable(value) for name, value in schunk.vlmeta.getall().items()}


def schunk_meta(schunk: blosc2.SChunk, urlpath: str | None, mtime: float | None) -> dict:
    """The SChunk object of 3.3 (b)."""
    return {
        "cbytes": int(schunk.cbytes),
        "chunkshape": int(schunk.chunkshape) if schunk.chunkshape is not None else None,
        "chunksize": int(schunk.chunksize),
        "contiguous": bool(schunk.contiguous),
        "cparams": cparams_dict(schunk.cparams),
        "cratio": float(schunk.cratio) if schunk.cbytes else 0.0,
        "nbytes": int(schunk.nbytes),
        "urlpath": urlpath,
        "vlmeta": vlmeta_dict(schunk),
        "nchunks": int(schunk.nchunks),
        "mtime": iso_mtime(mtime),
    }


def ndarray_meta(array: blosc2.NDArray, urlpath: str | None, mtime: float | None) -> dict:
    """The NDArray object of 3.3 (a)."""
    return {
        "shape": list(array.shape),
        "chunks": list(array.chunks),
        "blocks": list(array.blocks),
        "dtype": dtype_to_str(array.dtype),
        "schunk": schunk_meta(array.schunk, urlpath, None),
        "mtime": iso_mtime(mtime),
    }


def container_meta(obj: Any, urlpath: str | None, mtime: float | None) -> dict:
    """Metadata of an opened Blosc2 container (NDArray or SChunk)."""
    if isinstance(obj, blosc2.NDArray):
        return ndarray_meta(obj, urlpath, mtime)
    if isinstance(obj, blosc2.SChunk):
        return schunk_meta(obj, urlpath, mtime)
    raise TypeError(f"not a Blosc2 container: {type(obj).__name__}")


def ctable_meta(table: Any) -> dict:
    """What describes a Blosc2 CTable (upstream's `CTableMetadata` fields, `kind` aside)."""
    schema = table.schema_dict()
    vlmeta = table.vlmeta[:]
    return {
        "nrows": int(table.nrows),
        "ncols": int(table.ncols),
        "chunks": list(table.chunks),
        "blocks": list(table.blocks),
        "schema_dict": schema,
        "columns": [column["name"] for column in schema.get("columns", [])],
        "nbytes": int(table.nbytes),
        "cbytes": int(table.cbytes),
        "cratio": float(table.cratio),
        "vlmeta": to_jsonable(dict(vlmeta) if vlmeta else {}),
    }
