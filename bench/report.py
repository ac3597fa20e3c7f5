"""Statistics, targets and output of the benchmarks: a text table, Markdown and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MB = 1e6  # MB and GB are powers of ten throughout, as disk and network speeds are quoted


@dataclass
class Target:
    """A goal for one statistic of a row: `stat` compared with `value` by `op`."""

    stat: str  # "median", "p95", "ratio", "mbps", "rps", "max"
    op: str  # "<=" or ">="
    value: float
    label: str  # as printed, e.g. "median ≤ 2 ms"
    variants: tuple[str, ...] | None = None  # rows it applies to (None: every measured row)

    def applies(self, variant: str) -> bool:
        """Whether this target judges the row named `variant`."""
        return self.variants is None or variant in self.variants

    def met(self, value: float | None) -> bool | None:
        """True/False when `value` meets the target; None when there is no value."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value <= self.value if self.op == "<=" else value >= self.value

    def as_json(self) -> dict[str, Any]:
        """The target as JSON."""
        return {"stat": self.stat, "op": self.op, "value": self.value, "label": self.label}


@dataclass
class Row:
    """Samples of one way of doing a figure's operation (seconds, or bytes for memory)."""

    variant: str
    samples: list[float]
    nbytes: int | None = None  # payload per operation, for MB/s
    rate: float | None = None  # operations per second, when measured as such
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.samples)

    def quantile(self, q: float) -> float:
        """The `q` quantile (linear interpolation); NaN without samples."""
        if not self.samples:
            return math.nan
        values = sorted(self.samples)
        pos = (len(values) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        """Median of the samples."""
        return self.quantile(0.5)

    @property
    def p95(self) -> float:
        """95th percentile of the samples."""
        return self.quantile(0.95)

    @property
    def mbps(self) -> float | None:
        """MB/s at the median time, when the row moves a known payload."""
        if not self.nbytes or not self.samples or self.median <= 0:
            return None
        return self.nbytes / self.median / MB


@dataclass
class Figure:
    """One benchmark figure: its rows, the floor they are compared with, and its targets."""

    name: str
    title: str
    kind: str  # "latency", "throughput", "rate" or "memory"
    rows: list[Row]
    floor: Row | None = None
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the figure could not be measured

    def ratio(self, row: Row) -> float | None:
        """Against the floor: slowdown (latency) or fraction of its speed (throughput, rate)."""
        if self.floor is None or not self.floor.samples or not row.samples:
            return None
        if self.kind == "latency":
            return row.median / self.floor.median if self.floor.median > 0 else None
        if self.kind == "rate" and row.rate and self.floor.rate:
            return row.rate / self.floor.rate
        if self.kind == "throughput" and row.mbps and self.floor.mbps:
            return row.mbps / self.floor.mbps
        return None

    def stat(self, row: Row, name: str) -> float | None:
        """A named statistic of a row, as targets use them."""
        if not row.samples:
            return None
        if name == "median":
            return row.median
        if name == "p95":
            return row.p95
        if name == "max":
            return max(row.samples)
        if name == "ratio":
            return self.ratio(row)
        if name == "mbps":
            return row.mbps
        if name == "rps":
            return row.rate
        raise ValueError(f"unknown statistic {name!r}")

    def status(self, row: Row) -> str:
        """PASS, MISS, or '' when no target judges this row."""
        verdicts = [t.met(self.stat(row, t.stat)) for t in self.targets if t.applies(row.variant)]
        if not verdicts:
            return ""
        if any(v is None for v in verdicts):
            return "MISS"
        return "PASS" if all(verdicts) else "MISS"

    def row_json(self, row: Row) -> dict[str, Any]:
        """One row with its statistics and raw samples."""
        return {
            "variant": row.variant,
            "n": row.n,
            "median": _clean(row.median),
            "p95": _clean(row.p95),
            "min": _clean(min(row.samples)) if row.samples else None,
            "max": _clean(max(row.samples)) if row.samples else None,
            "nbytes": row.nbytes,
            "mbps": _clean(row.mbps),
            "rate": _clean(row.rate),
            "ratio_to_floor": _clean(self.ratio(row)),
            "status": self.status(row),
            "targets": [t.label for t in self.targets if t.applies(row.variant)],
            "extra": row.extra,
            "samples": [_clean(s) for s in row.samples],
        }

    def as_json(self) -> dict[str, Any]:
        """The figure as JSON."""
        return {
            "title": self.title,
            "kind": self.kind,
            "skipped": self.skipped,
            "targets": [t.as_json() for t in self.targets],
            "notes": self.notes,
            "floor": None if self.floor is None else self.row_json(self.floor),
            "rows": [self.row_json(r) for r in self.rows],
            "status": self.overall(),
        }

    def overall(self) -> str:
        """PASS when every judged row passes, MISS when one misses, '' when none is judged."""
        statuses = [self.status(r) for r in self.rows if self.status(r)]
        if self.skipped:
            return "SKIPPED"
        if not statuses:
            return ""
        return "PASS" if all(s == "PASS" for s in statuses) else "MISS"


def _clean(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


# --- formatting -------------------------------------------------------------------


def fmt_seconds(value: float | None) -> str:
    """A duration with a unit that keeps three significant digits."""
    if value is None or math.isnan(value):
        return "—"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def fmt_bytes(value: float | None) -> str:
    """A memory size in MB."""
    if value is None or math.isnan(value):
        return "—"
    return f"{value / MB:.0f} MB"


def _fmt_value(fig: Figure, value: float | None) -> str:
    return fmt_bytes(value) if fig.kind == "memory" else fmt_seconds(value)


def _fmt_rate(fig: Figure, row: Row) -> str:
    if fig.kind == "rate" and row.rate:
        return f"{row.rate:.0f} req/s"
    if row.mbps:
        return f"{row.mbps:.0f} MB/s" if row.mbps >= 10 else f"{row.mbps:.2f} MB/s"
    return "—"


def _fmt_ratio(fig: Figure, row: Row) -> str:
    ratio = fig.ratio(row)
    if ratio is None:
        return "—"
    if fig.kind == "latency":
        return f"{ratio:.1f}× floor"
    return f"{ratio:.2f} of floor"


def _fmt_floor(fig: Figure) -> str:
    floor = fig.floor
    if floor is None or not floor.samples:
        return "—"
    if fig.kind == "rate" and floor.rate:
        return f"{floor.rate:.0f} req/s"
    if fig.kind == "throughput" and floor.mbps:
        return f"{floor.mbps:.0f} MB/s"
    return _fmt_value(fig, floor.median)


HEADERS = ("figure", "via", "n", "median", "p95", "rate", "floor", "vs floor", "target", "status")


def table_rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    """One tuple of printed cells per measured row (and one per skipped figure)."""
    out: list[tuple[str, ...]] = []
    for fig in figures:
        if fig.skipped:
            out.append((fig.title, "—", "0", "—", "—", "—", "—", "—", "—", "SKIP"))
            continue
        for i, row in enumerate(fig.rows):
            targets = "; ".join(t.label for t in fig.targets if t.applies(row.variant)) or "—"
            out.append(
                (
                    fig.title if i == 0 else "",
                    row.variant,
                    str(row.n),
                    _fmt_value(fig, row.median),
                    _fmt_value(fig, row.p95),
                    _fmt_rate(fig, row),
                    _fmt_floor(fig) if i == 0 else "",
                    _fmt_ratio(fig, row),
                    targets,
                    fig.status(row) or "—",
                )
            )
    return out


def text_table(figures: list[Figure]) -> str:
    """The figures as an aligned plain-text table."""
    rows = [HEADERS, *table_rows(figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (for the README)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    for r in table_rows(figures):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def notes_text(figures: list[Figure]) -> str:
    """The notes of every figure, one per line."""
    lines = []
    for fig in figures:
        if fig.skipped:
            lines.append(f"- {fig.title}: skipped ({fig.skipped})")
        for note in fig.notes:
            lines.append(f"- {fig.title}: {note}")
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], figures: list[Figure]) -> None:
    """Write every figure, its samples and the run's metadata to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "figures": {f.name: f.as_json() for f in figures}}
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def figures_from_json(doc: dict[str, Any]) -> list[Figure]:
    """Rebuild figures from a results file (to print its tables again)."""
    figures = []
    for name, f in doc["figures"].items():

        def row(d: dict[str, Any]) -> Row:
            return Row(d["variant"], d["samples"], d["nbytes"], d["rate"], d.get("extra", {}))

        targets = [
            Target(t["stat"], t["op"], t["value"], t["label"], _variants(f, t["label"]))
            for t in f["targets"]
        ]
        figures.append(
            Figure(
                name,
                f["title"],
                f["kind"],
                [row(r) for r in f["rows"]],
                row(f["floor"]) if f["floor"] else None,
                targets,
                f["notes"],
                f["skipped"],
            )
        )
    return figures


def _variants(fig: dict[str, Any], label: str) -> tuple[str, ...]:
    return tuple(r["variant"] for r in fig["rows"] if label in r["targets"])
