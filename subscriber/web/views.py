"""What a dataset page shows: its metadata and a table window over its values."""

from __future__ import annotations

import datetime
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import blosc2
import numpy as np

from ...common.b2meta import str_to_dtype
from ...common.errors import BadRequest
from ...common.slices import parse_slice
from ..compute_budget import DEFAULT_MAX_BYTES, check_result_size
from ..store import User
from .access import Access

ROWS = 25  # default rows of a table window
COLS = 12  # default columns of a 2-D table window
MAX_ROWS = 500
MAX_COLS = 60
MAX_FIELDS = 10  # fields shown by default in a structured table
SORT_CACHE_ITEMS = 8
SORT_CACHE_BYTES = 64 * 1024 * 1024


# Formatting


def human_size(n: int | float | None) -> str:
    """1536 → '1.5 KiB'."""
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt_value(value: Any) -> str:
    """One table cell."""
    if isinstance(value, bytes | np.bytes_):
        text = bytes(value).decode("utf-8", errors="backslashreplace")
        return text
    if isinstance(value, np.bool_ | bool):
        return "true" if value else "false"
    if isinstance(value, np.complexfloating | complex):
        return (
            f"{fmt_value(value.real)}{'+' if value.imag >= 0 else '-'}{fmt_value(abs(value.imag))}j"
        )
    if isinstance(value, np.floating | float):
        if math.isnan(value) or math.isinf(value):
            return str(float(value))
        return f"{float(value):.6g}"
    if isinstance(value, np.void):
        return "(" + ", ".join(fmt_value(v) for v in value.tolist()) + ")"
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=8, max_line_width=60)
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def fmt_time(mtime: Any) -> str:
    """An info `mtime` (ISO text or epoch seconds) as readable UTC."""
    if mtime is None:
        return ""
    try:
        if isinstance(mtime, int | float):
            dt = datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC)
        else:
            dt = datetime.datetime.fromisoformat(str(mtime).replace("Z", "+00:00"))
    except ValueError:
        return str(mtime)
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def enum_name(enum: Any, value: Any) -> str:
    try:
        return enum(value).name
    except (ValueError, TypeError):
        return str(value)


def dims(shape: list[int] | tuple[int, ...]) -> str:
    return " × ".join(str(s) for s in shape) if len(shape) else "scalar (0-d)"


# Metadata


@dataclass
class Meta:
    """The metadata of a dataset, ready to show."""

    kind: str  # array | frame | file | hdf5 | lazy | error
    rows: list[tuple[str, str]] = field(default_factory=list)
    compression: list[tuple[str, str]] = field(default_factory=list)
    fields: list[tuple[str, str]] = field(default_factory=list)
    vlmeta: list[tuple[str, str]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    dtype: np.dtype | None = None
    nbytes: int | None = None
    cbytes: int | None = None
    cratio: float | None = None
    error: str | None = None

    @property
    def structured(self) -> bool:
        return self.dtype is not None and self.dtype.names is not None

    @property
    def saved_pct(self) -> int | None:
        """How much smaller the stored data is, in percent."""
        if not self.nbytes or self.cbytes is None or not self.cbytes:
            return None
        return max(0, min(100, round(100 * (1 - self.cbytes / self.nbytes))))


def _compression(sc: dict) -> list[tuple[str, str]]:
    cp = sc.get("cparams") or {}
    filters = [enum_name(blosc2.Filter, f) for f in cp.get("filters", []) if f]
    rows = [
        ("Uncompressed", f"{human_size(sc.get('nbytes'))} ({sc.get('nbytes'):,} bytes)"),
        ("Compressed", f"{human_size(sc.get('cbytes'))} ({sc.get('cbytes'):,} bytes)"),
        ("Ratio", f"{sc.get('cratio', 0):.2f}×"),
        ("Codec", f"{enum_name(blosc2.Codec, cp.get('codec'))} level {cp.get('clevel')}"),
        ("Filters", ", ".join(filters) or "none"),
        ("Type size", f"{cp.get('typesize')} B"),
        ("Chunks stored", str(sc.get("nchunks"))),
        ("Chunk size", human_size(sc.get("chunksize"))),
        ("Block size", human_size(cp.get("blocksize")) if cp.get("blocksize") else "automatic"),
    ]
    return rows


def summarize(info: dict, name: str) -> Meta:
    """Turn an `/api/info` object into what the Info tab shows."""
    if "error" in info:
        meta = Meta("error", error=str(info["error"]))
        if info.get("expr"):
            meta.rows.append(("Expression", str(info["expr"])))
        for var, op in (info.get("missing_ops") or {}).items():
            meta.rows.append((f"Missing operand {var}", str(op)))
        return meta
    if info.get("kind") == "ctable":
        return table_meta(info)
    if "size" in info and "nbytes" not in info and "shape" not in info:
        return Meta(
            "hdf5",
            rows=[
                ("Kind", "HDF5 file (stored as it is)"),
                ("Size", f"{human_size(info['size'])} ({info['size']:,} bytes)"),
                ("Modified", fmt_time(info.get("mtime"))),
            ],
        )
    if "shape" in info:
        shape = tuple(info["shape"])
        dtype = str_to_dtype(info["dtype"])
        meta = Meta("array", shape=shape, dtype=dtype)
        meta.rows += [
            ("Kind", "Lazy expression" if "expression" in info else "N-dimensional array"),
            ("Shape", dims(shape)),
            ("Items", f"{math.prod(shape):,}"),
            ("Data type", str(dtype) if dtype.names is None else "structured (fields below)"),
        ]
        if "expression" in info:
            meta.kind = "lazy"
            meta.rows.append(("Expression", str(info["expression"])))
            for var, op in (info.get("operands") or {}).items():
                meta.rows.append((f"Operand {var}", str(op)))
        if info.get("chunks") is not None:
            chunk_bytes = math.prod(info["chunks"]) * dtype.itemsize
            block_bytes = math.prod(info["blocks"]) * dtype.itemsize
            meta.rows.append(("Chunks", f"{dims(info['chunks'])} ({human_size(chunk_bytes)})"))
            meta.rows.append(("Blocks", f"{dims(info['blocks'])} ({human_size(block_bytes)})"))
        if dtype.names:
            meta.fields = [(n, str(dtype.fields[n][0])) for n in dtype.names]
        sc = info.get("schunk") or {}
    else:
        meta = Meta("frame" if name.endswith(".b2frame") else "file")
        sc = info
        meta.rows.append(
            ("Kind", "Blosc2 frame (bytes)" if meta.kind == "frame" else "File (compressed)")
        )
        meta.rows.append(
            ("Size", f"{human_size(sc.get('nbytes'))} ({sc.get('nbytes', 0):,} bytes)")
        )
    meta.rows.append(("Modified", fmt_time(info.get("mtime"))))
    if sc:
        meta.nbytes, meta.cbytes, meta.cratio = sc.get("nbytes"), sc.get("cbytes"), sc.get("cratio")
        meta.compression = _compression(sc)
        for key, value in (sc.get("vlmeta") or {}).items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            meta.vlmeta.append((str(key), text if len(text) < 2000 else text[:2000] + " …"))
    return meta


def table_meta(info: dict) -> Meta:
    """What the Info tab shows of a table (a CTable `.b2z`)."""
    meta = Meta("table", nbytes=info.get("nbytes"), cbytes=info.get("cbytes"))
    meta.cratio = info.get("cratio")
    meta.rows += [
        ("Kind", "Table (Blosc2 CTable)"),
        ("Rows", f"{info['nrows']:,}"),
        ("Columns", str(info.get("ncols", len(info.get("columns", []))))),
        ("Modified", fmt_time(info.get("mtime"))),
    ]
    if info.get("size") is not None:
        meta.rows.append(("File size", f"{human_size(info['size'])} ({info['size']:,} bytes)"))
    for column in (info.get("schema_dict") or {}).get("columns", []):
        extra = {k: v for k, v in column.items() if k not in ("name", "kind")}
        kind = str(column.get("kind", "?")) + (f" {extra}" if extra else "")
        meta.fields.append((str(column.get("name")), kind))
    for key, value in (info.get("vlmeta") or {}).items():
        meta.vlmeta.append((str(key), value if isinstance(value, str) else json.dumps(value)))
    return meta


# Table windows


@dataclass
class Axis:
    """One axis of the table form: its size and the slice text the user gave."""

    axis: int
    size: int
    text: str
    index: int | None = None
    start: int = 0
    stop: int = 0
    step: int = 1

    @property
    def is_range(self) -> bool:
        return self.index is None

    @property
    def count(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def key(self) -> int | slice:
        return self.index if self.index is not None else slice(self.start, self.stop, self.step)

    def labels(self) -> list[int]:
        return list(range(self.start, self.stop, self.step))


def range_text(start: int, stop: int, step: int = 1) -> str:
    return f"{start}:{stop}" + (f":{step}" if step != 1 else "")


def parse_axis(axis: int, size: int, text: str, limit: int) -> tuple[Axis, str | None]:
    """Read one axis field: an index (`3`, `-1`) or a range (`2:10`, `::2`); empty = all."""
    text = (text or "").strip()
    note = None
    try:
        key = parse_slice(text or ":")
    except BadRequest as exc:
        detail = str(exc.detail).replace("Invalid slice", "invalid slice")
        raise BadRequest(f"Axis {axis}: {detail}") from None
    if isinstance(key, tuple):
        raise BadRequest(f"Axis {axis}: give one index or one range (like 0:10), not {text!r}")
    if isinstance(key, int):
        if not -size <= key < size:
            raise BadRequest(f"Index {key} is out of range for axis {axis} (size {size})")
        return Axis(axis, size, text, index=key % size), None
    if key.step is not None and key.step < 0:
        raise BadRequest(f"Axis {axis}: negative steps are not supported ({text!r})")
    start, stop, step = key.indices(size)
    if size and (start >= size or (key.start is not None and key.start < -size)):
        raise BadRequest(f"Slice {text!r} is out of range for axis {axis} (size {size})")
    if size and start >= stop:
        raise BadRequest(f"Slice {text!r} selects nothing on axis {axis} (size {size})")
    ax = Axis(axis, size, text, start=start, stop=max(start, stop), step=step)
    if ax.count > limit:
        ax.stop = start + limit * step
        note = f"Axis {axis} shows {limit} items at a time; use the page buttons to see the rest."
    ax.text = range_text(ax.start, ax.stop, ax.step)
    return ax, note


@dataclass
class Table:
    """A window of an array, as rows of formatted cells."""

    axes: list[Axis]
    header: list[str]
    rows: list[tuple[str, list[str]]]  # (row label, cells)
    row_axis: int | None
    col_axis: int | None
    fields: list[str] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    filter: str = ""
    sort: str = ""
    desc: bool = False
    matches: int | None = None  # rows left by the filter (structured views)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    scalar: str | None = None
    pages: dict[str, str | None] = field(default_factory=dict)
    slice_text: str = ""
    computed: bool = False  # filtered or sorted: the window is over the computed rows


def default_texts(shape: tuple[int, ...], structured: bool) -> list[str]:
    """The slice fields of a fresh table: a first window on the last one or two axes."""
    n = len(shape)
    if n == 0:
        return []
    if structured or n == 1:
        return [f"0:{min(ROWS, shape[0])}"] + ["0"] * (n - 1)
    texts = ["0"] * (n - 2)
    texts += [f"0:{min(ROWS, shape[-2])}", f"0:{min(COLS, shape[-1])}"]
    return texts


class SortCache:
    """The last few filtered or sorted row sets, so paging through them is instant."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: tuple, rows: np.ndarray) -> None:
        if rows.nbytes > SORT_CACHE_BYTES:
            return
        with self._lock:
            self._items[key] = rows
            while len(self._items) > SORT_CACHE_ITEMS:
                self._items.popitem(last=False)


SORT_CACHE = SortCache()


def _page_query(params: dict[str, Any], texts: list[str], axis: int, new: str) -> str:
    query = {k: v for k, v in params.items() if not k.startswith("s") or not k[1:].isdigit()}
    for i, text in enumerate(texts):
        query[f"s{i}"] = new if i == axis else text
    return "?" + urlencode(query, doseq=True)


def _pages(ax: Axis, texts: list[str], params: dict, prefix: str) -> dict[str, str | None]:
    """First/previous/next/last links moving the window of one axis."""
    span = ax.stop - ax.start
    last_start = max(0, ((ax.size - 1) // span) * span) if ax.size else 0
    out: dict[str, str | None] = {}

    def link(start: int) -> str:
        stop = min(start + span, ax.size) if ax.step == 1 else start + span
        return _page_query(params, texts, ax.axis, range_text(start, stop, ax.step))

    out[f"{prefix}first"] = link(0) if ax.start > 0 else None
    out[f"{prefix}prev"] = link(max(0, ax.start - span)) if ax.start > 0 else None
    out[f"{prefix}next"] = link(ax.start + span) if ax.start + span < ax.size else None
    out[f"{prefix}last"] = link(last_start) if ax.start + span < ax.size else None
    return out


def table_view(
    access: Access, path: str, user: User | None, meta: Meta, params: dict[str, Any]
) -> Table:
    """Build the table a Data tab shows for the query `params`."""
    shape = meta.shape or ()
    dtype = meta.dtype
    names = list(dtype.names or ())
    filter_ = str(params.get("filter") or "").strip()
    sort = str(params.get("sort") or "")
    desc = str(params.get("desc") or "") in ("1", "true", "on")
    chosen = [f for f in _as_list(params.get("f")) if f in names] or names[:MAX_FIELDS]
    if sort and sort not in names:
        raise BadRequest(f"Cannot sort by {sort!r}: it is not a field ({', '.join(names)})")
    computed = bool(names) and bool(filter_ or sort)
    if not shape and not computed:
        value = access.read(path, user, None)
        return Table([], [], [], None, None, scalar=fmt_value(np.asarray(value)[()]))

    rows_data = None
    if computed:
        # Sorting needs every row in memory (filtering too, as the rows kept are sorted next).
        limit = getattr(access.expressions, "max_bytes", None) or DEFAULT_MAX_BYTES
        check_result_size(shape, dtype.itemsize, limit, "Filtering or sorting this dataset")
        stamp = access.stamp(path, user)
        # Per reader: @personal is another file for each user, and saved expressions read
        # operands with the reader's rights.
        cache_key = (user.id if user else None, path, stamp, filter_, sort, desc)
        rows_data = SORT_CACHE.get(cache_key)
        if rows_data is None:
            rows_data = np.asarray(access.read(path, user, None, None, filter_ or None)).reshape(-1)
            if sort:
                order = np.argsort(rows_data[sort], kind="stable")
                rows_data = rows_data[order[::-1] if desc else order]
            SORT_CACHE.put(cache_key, rows_data)
        shape = rows_data.shape

    texts = [str(params.get(f"s{i}", "")) for i in range(len(shape))]
    defaults = default_texts(shape, bool(names))
    if computed and not params.get("s0"):
        texts = defaults
    elif not any(texts):
        texts = defaults
    axes, notes = [], []
    for i, size in enumerate(shape):
        ranges = [a for a in axes if a.is_range]
        limit = MAX_COLS if (ranges and not names) else MAX_ROWS
        ax, note = parse_axis(i, size, texts[i] or ":", limit)
        axes.append(ax)
        if note:
            notes.append(note)
    ranged = [a for a in axes if a.is_range]
    if names and len(ranged) > 1:
        raise BadRequest(
            "A table with fields shows one axis at a time: give a single index "
            "(like 0) for every axis but one."
        )
    if len(ranged) > 2:
        raise BadRequest(
            "A table shows at most two axes: give a single index (like 0) for the other axes."
        )
    key = tuple(a.key() for a in axes)
    if computed:
        values = rows_data[key] if key else rows_data
    else:
        values = access.read(path, user, key)
    values = np.asarray(values)
    texts = [a.text for a in axes]
    row_ax = ranged[0] if ranged else None
    col_ax = ranged[1] if len(ranged) > 1 else None
    table = Table(
        axes,
        [],
        [],
        row_ax.axis if row_ax else None,
        col_ax.axis if col_ax else None,
        fields=names,
        chosen=chosen,
        filter=filter_,
        sort=sort,
        desc=desc,
        notes=notes,
        computed=computed,
        slice_text=", ".join(a.text for a in axes),
    )
    if computed:
        table.matches = len(rows_data)
    if names:
        table.header = chosen
        labels = row_ax.labels() if row_ax else [None]
        flat = values.reshape(-1)
        for label, record in zip(labels, flat, strict=False):
            table.rows.append(
                ("" if label is None else str(label), [fmt_value(record[f]) for f in chosen])
            )
    elif col_ax is not None:
        table.header = [str(c) for c in col_ax.labels()]
        for label, row in zip(row_ax.labels(), values, strict=False):
            table.rows.append((str(label), [fmt_value(v) for v in row]))
    elif row_ax is not None:
        table.header = ["value"]
        for label, v in zip(row_ax.labels(), values, strict=False):
            table.rows.append((str(label), [fmt_value(v)]))
    else:
        table.scalar = fmt_value(values[()])
    if row_ax is not None:
        table.pages.update(_pages(row_ax, texts, params, "row_"))
    if col_ax is not None:
        table.pages.update(_pages(col_ax, texts, params, "col_"))
    return table


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
