"""`POST /api/unfold/{path}`: turn an HDF5 file of a local root into a tree of `.b2nd` shells.

Next to `dir/name.h5` appears `dir/name/`, mirroring the file: one shell per
dataset (`<dataset path>.b2nd`, see `hdf5_shells`) and a `!_attrs_.json` per
group.  The tree is built aside by a worker process (h5py never runs in the
server; a corrupt file cannot crash it), checked against the quota, then
moved into place.  Answers the file's stem, as the original does (compat 3.10).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

import falcon

from ..common import hdf5_attrs, hdf5_convert, hdf5_workers
from ..common.errors import BadRequest
from ..common.hdf5_base import GROUP_ATTRS_NAME, SHELL_FTYPE, HDF5Error
from ..common.paths import is_hdf5
from . import hdf5_shells
from .file_ops import FileOps, quota_exceeded
from .store import User

log = logging.getLogger(__name__)


def unfold_task(h5path: str, outdir: str) -> dict[str, Any]:
    """Write the shells and group attribute files of `h5path` below `outdir` (in a worker)."""
    f = hdf5_workers.h5file(h5path)
    out = Path(outdir)
    datasets, skipped = 0, []
    for node in hdf5_convert.walk(f):
        if node.kind == "group":
            attrs = hdf5_attrs.read_attrs(node.obj)
            target = out / node.path / GROUP_ATTRS_NAME
            target.parent.mkdir(parents=True, exist_ok=True)
            hdf5_attrs.write_group_file(target, attrs)
            continue
        if node.kind != "dataset":
            if node.reason:
                skipped.append(f"/{node.path}: {node.reason}")
            continue
        try:
            layout = hdf5_convert.dataset_layout(node.obj)
        except HDF5Error as exc:
            skipped.append(f"/{node.path}: {exc}")  # not representable: left out (compat 3.10)
            continue
        attrs = hdf5_attrs.read_attrs(node.obj)
        target = out / f"{node.path}.b2nd"
        target.parent.mkdir(parents=True, exist_ok=True)
        vlmeta = {"_ftype": SHELL_FTYPE, "_dsetname": node.path, **attrs.plain}
        shell = hdf5_convert.new_array(layout, target, vlmeta=vlmeta)
        del shell
        datasets += 1
    return {"datasets": datasets, "skipped": skipped}


def _install(tmp: Path, target: Path) -> None:
    """Move a built tree into place, merging into an existing directory of the same name."""
    if not target.exists():
        os.replace(tmp, target)
        return
    if not target.is_dir():
        raise BadRequest(f"{target.name} exists and is not a directory")
    for src in sorted(tmp.rglob("*")):
        dst = target / src.relative_to(tmp)
        if src.is_dir():
            if dst.exists() and not dst.is_dir():
                dst.unlink()
            dst.mkdir(exist_ok=True)
        else:
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(src, dst)
    shutil.rmtree(tmp)


def unfold(ops: FileOps, logical: str, user: User | None) -> str:
    """Unfold the HDF5 file at `logical`; return its stem."""
    loc = ops.roots.locate(logical, user, "Unfolding")
    if not loc.relpath or not loc.path.is_file():
        raise BadRequest("Target file does not exist or is not a file")
    if not is_hdf5(loc.path.name):
        raise BadRequest("Target file must be a zip, tar or hdf5 container")
    stem = PurePosixPath(loc.relpath).stem
    tmp = ops.roots.new_tmp_path(stem)
    try:
        summary = hdf5_shells.run(unfold_task, str(loc.path), str(tmp))
        for skipped in summary["skipped"]:
            log.warning("unfolding %s: %s (left out)", loc.logical, skipped)
        if not summary["datasets"]:
            raise BadRequest("No arrays found in HDF5 file")
        with ops.writing():
            # The tree is already on the state's disk (in tmp): usage counts it.
            if ops.quota and ops.roots.disk_usage() > ops.quota:
                raise quota_exceeded("Unfold")
            _install(tmp, loc.path.with_name(stem))
            ops.usage.forget()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stem


class UnfoldResource:
    """`POST /api/unfold/{path}`."""

    def __init__(self, ops: FileOps) -> None:
        self.ops = ops

    def on_post(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        resp.media = unfold(self.ops, path, req.context.user)
