"""Regular files carried as Blosc2 SChunk frames (`<name>.b2`, typesize 1)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import blosc2

# Big files are compressed piece by piece, so memory stays flat whatever their size.
FILE_CHUNKSIZE = 8 * 1024 * 1024


def compress_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Compress the bytes of `src` into a new SChunk frame at `dst`."""
    size = os.path.getsize(src)
    chunksize = max(1, min(size, FILE_CHUNKSIZE))
    Path(dst).unlink(missing_ok=True)
    schunk = blosc2.SChunk(
        chunksize=chunksize,
        urlpath=str(dst),
        contiguous=True,
        mode="w",
        cparams=blosc2.CParams(typesize=1),
    )
    with open(src, "rb") as f:
        while block := f.read(chunksize):
            schunk.append_data(block)
    del schunk


def decompressed_chunks(schunk: blosc2.SChunk) -> Iterator[bytes]:
    """The decompressed content of an SChunk, one chunk at a time."""
    for i in range(schunk.nchunks):
        yield schunk.decompress_chunk(i)


def store_tree(src_dir: str | os.PathLike, rootdir: str | os.PathLike) -> None:
    """Copy the files below `src_dir` into a root folder, regular files as `<name>.b2`."""
    import shutil

    from .paths import stored_name

    src_dir, rootdir = Path(src_dir), Path(rootdir)
    for src in sorted(src_dir.rglob("*")):
        if not src.is_file() or src.suffix == ".py":
            continue
        dst = rootdir / stored_name(src.relative_to(src_dir).as_posix())
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.name == src.name:
            shutil.copyfile(src, dst)
        else:
            compress_file(src, dst)
