"""HDF5 ⇄ Blosc2 attributes: HDF5 attributes as typed and plain values, a dataset's
metadata, and the JSON file that carries a group's attributes in a Blosc2 tree.

Split from `hdf5_convert` (types, layout, chunks), whose helpers it uses.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import blosc2
import numpy as np

from .b2meta import dtype_to_str, str_to_dtype
from .hdf5_convert import META_KEY, Unsupported, check_dtype, h5py_module

# -- attributes --------------------------------------------------------------------


def plain_value(value: Any) -> Any:
    """An attribute value as plain data (JSON/msgpack): numbers, strings, lists, None."""
    h5py = h5py_module()
    if isinstance(value, h5py.Empty):
        return "" if value.dtype.kind in "SU" or value.dtype.kind == "O" else None
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"__bytes__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, np.ndarray):
        return [plain_value(v) for v in value] if value.ndim else plain_value(value[()])
    if isinstance(value, np.void):
        return [plain_value(value[name]) for name in value.dtype.names or ()]
    if isinstance(value, np.generic):
        return plain_value(value.item())
    if isinstance(value, complex):
        return str(value)  # JSON has no complex numbers; the exact value is kept typed
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value


def _typed_attr(attrs: Any, name: str, h5py: Any) -> tuple[Any, dict[str, Any]]:
    """(value, exact encoding) of one attribute."""
    aid = attrs.get_id(name)
    dtype = aid.dtype
    value = attrs[name]
    string = h5py.check_string_dtype(dtype)
    if isinstance(value, h5py.Empty):
        if string is not None and string.length is None:
            return value, {"t": "empty", "vlstr": string.encoding}
        return value, {"t": "empty", "dtype": dtype_to_str(dtype), **_type_extras(dtype, h5py)}
    if string is not None and string.length is None:
        data = value if isinstance(value, str) else np.asarray(value, dtype=object).tolist()
        if isinstance(data, bytes):
            raise Unsupported("a variable-length string that is not valid text")
        return value, {"t": "vlstr", "enc": string.encoding, "shape": list(aid.shape), "v": data}
    check_dtype(dtype, h5py)
    array = np.asarray(value, dtype=dtype)
    return value, {
        "t": "arr",
        "dtype": dtype_to_str(dtype),
        "shape": list(aid.shape),
        "data": np.ascontiguousarray(array).tobytes(),
        **_type_extras(dtype, h5py),
    }


def _type_extras(dtype: np.dtype, h5py: Any) -> dict[str, Any]:
    """What NumPy's dtype string loses: string charsets and enum members."""
    extras: dict[str, Any] = {}
    string = h5py.check_string_dtype(dtype)
    if string is not None and string.length is not None:
        extras["enc"] = string.encoding
    enum = h5py.check_enum_dtype(dtype)
    if enum is not None:
        extras["enum"] = {str(k): int(v) for k, v in enum.items()}
    return extras


def h5_dtype(dtype: np.dtype, extras: dict[str, Any], h5py: Any) -> np.dtype:
    """The HDF5 flavour of a dtype (charset, enum) recorded by `_type_extras`."""
    if extras.get("enum"):
        return h5py.enum_dtype(extras["enum"], basetype=dtype)
    if extras.get("enc") and dtype.kind == "S":
        return h5py.string_dtype(extras["enc"], dtype.itemsize)
    return dtype


@dataclass
class Attrs:
    """The attributes of an HDF5 object: plain values, exact encodings, and what failed."""

    plain: dict[str, Any] = field(default_factory=dict)
    typed: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_attrs(obj: Any) -> Attrs:
    """Every attribute of a group or dataset; those that cannot be converted are reported."""
    h5py = h5py_module()
    result = Attrs()
    try:
        names = list(obj.attrs)
    except Exception as exc:
        result.problems.append(f"attributes cannot be read: {exc}")
        return result
    for name in names:
        try:
            value, typed = _typed_attr(obj.attrs, name, h5py)
        except Unsupported as exc:
            result.problems.append(f"attribute {name!r}: {exc}")
            continue
        except Exception as exc:
            result.problems.append(f"attribute {name!r} cannot be read: {exc}")
            continue
        result.plain[name] = plain_value(value)
        result.typed[name] = typed
    return result


def _write_attr(obj: Any, name: str, spec: dict[str, Any], h5py: Any) -> None:
    kind = spec["t"]
    if kind == "empty":
        if "vlstr" in spec:
            dtype = h5py.string_dtype(spec["vlstr"])
        else:
            dtype = h5_dtype(str_to_dtype(spec["dtype"]), spec, h5py)
        obj.attrs.create(name, h5py.Empty(dtype))
    elif kind == "vlstr":
        data = spec["v"]
        if spec["shape"]:
            data = np.array(data, dtype=object).reshape(spec["shape"])
        obj.attrs.create(name, data, dtype=h5py.string_dtype(spec["enc"]))
    else:
        dtype = str_to_dtype(spec["dtype"])
        data = np.frombuffer(spec["data"], dtype=dtype).reshape(spec["shape"])
        obj.attrs.create(name, data, dtype=h5_dtype(dtype, spec, h5py))


def write_attrs(obj: Any, typed: dict[str, Any], plain: dict[str, Any] | None = None) -> list[str]:
    """Recreate attributes from their exact encodings, else from plain values; return problems."""
    h5py = h5py_module()
    problems = []
    for name, value in (plain or {}).items():
        if name in typed:
            continue
        try:
            obj.attrs[name] = value
        except Exception as exc:
            problems.append(f"attribute {name!r} ({type(value).__name__}) not written: {exc}")
    for name, spec in typed.items():
        try:
            _write_attr(obj, name, spec, h5py)
        except Exception as exc:
            problems.append(f"attribute {name!r} not written: {exc}")
    return problems


def dataset_meta(dset: Any, attrs: Attrs) -> dict[str, Any]:
    """The `hdf5` metalayer of a converted dataset: what export needs to restore it exactly."""
    h5py = h5py_module()
    return {
        "v": 1,
        "dtype": dtype_to_str(dset.dtype),
        "null": dset.shape is None,
        "maxshape": list(dset.maxshape) if dset.maxshape is not None else None,
        "attrs": attrs.typed,
        **_type_extras(dset.dtype, h5py),
    }


def group_attrs_json(plain: dict[str, Any]) -> bytes:
    """The indented JSON of a group's attributes (what `!_attrs_.json` shows)."""
    return json.dumps(plain, indent=4, default=str).encode() + b"\n"


def write_group_file(
    path: str | os.PathLike, attrs: Attrs, links: dict[str, str] | None = None
) -> None:
    """Write a group's `!_attrs_.json.b2`: JSON for people, exact encodings in a metalayer."""
    data = group_attrs_json(attrs.plain)
    blosc2.remove_urlpath(os.fspath(path))
    meta = {META_KEY: {"v": 1, "attrs": attrs.typed, "links": links or {}}}
    schunk = blosc2.SChunk(
        chunksize=len(data),
        data=data,
        cparams=blosc2.CParams(typesize=1, nthreads=1),
        urlpath=os.fspath(path),
        contiguous=True,
        mode="w",
        meta=meta,
    )
    del schunk


def read_group_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any], dict]:
    """(plain, typed, links) from a `!_attrs_.json.b2` file."""
    # From the bytes: `blosc2.open` takes a `.h5` directory in the path for an HDF5 source.
    with open(path, "rb") as f:
        schunk = blosc2.schunk_from_cframe(f.read(), copy=True)
    plain = json.loads(bytes(schunk[:]) or b"{}") or {}
    meta = schunk.meta[META_KEY] if META_KEY in schunk.meta else {}
    return plain, meta.get("attrs", {}), meta.get("links", {})
