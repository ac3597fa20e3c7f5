"""The benchmark data: float64 fields made deterministically, cached on disk by their parameters.

A field is a smooth function of position plus Gaussian noise, rounded to float32
precision and stored as float64 (what a sensor or a float32 model writes into a
float64 file), so it compresses as real data does (a ratio of about 2.6 with
Blosc2's default ZSTD + shuffle) rather than like zeros or like pure noise.
The big dataset of the memory figure keeps full float64 precision (a ratio of
about 1.2), so that its file, not only its array, weighs about a gigabyte.
Each slab of chunks along the first axis draws its noise from its own seeded
generator, so any slab is reproducible alone and memory stays at one slab.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import blosc2
import numpy as np

VERSION = 1  # bump when the generator changes: cached files are keyed by it


@dataclass(frozen=True)
class FieldSpec:
    """Shape, chunking and seed of one generated dataset."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    seed: int = 42
    noise: float = 0.01
    precision: str = "float32"  # values rounded to this precision (float64: not rounded)

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return int(np.prod(self.shape)) * 8

    @property
    def key(self) -> str:
        """A file name naming the parameters, so changed parameters never reuse a file."""
        params = json.dumps({**asdict(self), "version": VERSION}, sort_keys=True)
        digest = hashlib.sha256(params.encode()).hexdigest()[:10]
        dims = "x".join(map(str, self.shape))
        return f"field-{dims}-{digest}.b2nd"


def _slab(spec: FieldSpec, start: int, stop: int) -> np.ndarray:
    """Rows `start:stop` (first axis) of the field."""
    nz, ny, nx = spec.shape
    z = (np.arange(start, stop, dtype=np.float64) / nz)[:, None, None]
    y = (np.arange(ny, dtype=np.float64) / ny)[None, :, None]
    x = (np.arange(nx, dtype=np.float64) / nx)[None, None, :]
    smooth = np.sin(2 * np.pi * (1.5 * z + 2 * y)) * np.cos(2 * np.pi * (3 * x - y)) + 0.5 * z
    rng = np.random.default_rng([spec.seed, start])
    values = smooth + rng.normal(0.0, spec.noise, smooth.shape)
    return values.astype(spec.precision).astype(np.float64)


def generate(spec: FieldSpec, path: Path) -> None:
    """Write the field to `path` (aside, then renamed: a half-made file is never used)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    array = blosc2.empty(spec.shape, dtype=np.float64, chunks=spec.chunks, urlpath=str(tmp))
    step = spec.chunks[0]
    for start in range(0, spec.shape[0], step):
        stop = min(start + step, spec.shape[0])
        array[start:stop] = _slab(spec, start, stop)
    del array
    tmp.rename(path)


def ensure(spec: FieldSpec, datadir: Path, log=print) -> Path:
    """The path of the field, generated first when it is not cached in `datadir`."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / spec.key
    if path.exists():
        return path
    t0 = time.perf_counter()
    log(f"generating {path.name} ({spec.nbytes / 1e6:.0f} MB uncompressed)...")
    generate(spec, path)
    cratio = spec.nbytes / path.stat().st_size
    log(
        f"  done in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e6:.0f} MB stored, "
        f"ratio {cratio:.2f}"
    )
    return path


def describe(spec: FieldSpec, path: Path) -> dict:
    """What the results file says about a dataset."""
    array = blosc2.open(str(path), mode="r")
    return {
        "file": path.name,
        "shape": list(spec.shape),
        "chunks": list(spec.chunks),
        "blocks": list(array.blocks),
        "dtype": "float64",
        "nbytes": spec.nbytes,
        "stored_bytes": path.stat().st_size,
        "cratio": round(spec.nbytes / path.stat().st_size, 3),
        "codec": str(array.schunk.cparams.codec.name),
        "clevel": int(array.schunk.cparams.clevel),
        "seed": spec.seed,
    }
