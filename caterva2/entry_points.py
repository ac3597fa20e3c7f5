"""Entry points of the programs that need an extra (`cat2sub`, `cat2pub`, ...).

`pip install caterva2` installs the client only, but every program's script.
Run without its extra, a server program would die in a ModuleNotFoundError
traceback; these entry points check first and say in one line which extra to
install. This module imports nothing beyond the standard library: it must load
in any install.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    name: str
    extra: str
    target: str  # "module:function"
    # What the program imports from its extra (import names), at start or later on.
    needs: tuple[str, ...]


_SUBSCRIBER = ("falcon", "waitress", "sqlite_utils", "pika", "watchdog", "jinja2", "markdown_it")
_PUBLISHER = ("falcon", "waitress", "sqlite_utils", "pika", "watchdog")
_HDF5 = ("h5py", "hdf5plugin")

PROGRAMS = {
    p.name: p
    for p in (
        Program("cat2sub", "subscriber", "caterva2.subscriber.server:main", (*_SUBSCRIBER, "PIL")),
        Program("cat2adduser", "subscriber", "caterva2.subscriber.adduser:main", ("sqlite_utils",)),
        Program("cat2pub", "publisher", "caterva2.publisher.server:main", _PUBLISHER),
        # The broker tool comes with either server extra (both hold pika).
        Program("cat2bro", "subscriber", "caterva2.broker.cli:main", ("pika",)),
        Program("cat2import", "hdf5", "caterva2.hdf5_tools:import_main", _HDF5),
        Program("cat2export", "hdf5", "caterva2.hdf5_tools:export_main", _HDF5),
    )
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that cannot load, or an import hook refusing it
        return False


def _refuse(program: Program, missing: str) -> int:
    print(
        f"{program.name}: needs the '{program.extra}' extra, which is not installed "
        f"(missing: {missing}): pip install 'caterva2[{program.extra}]'",
        file=sys.stderr,
    )
    return 2


def run(program: Program) -> int:
    """Run `program`'s main function, or say which extra it needs (status 2)."""
    missing = [m for m in program.needs if not _installed(m)]
    if missing:
        return _refuse(program, ", ".join(missing))
    module, _, function = program.target.partition(":")
    try:
        main = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as exc:
        # A dependency `needs` does not list: still one line, not a traceback.
        top = (exc.name or "").split(".")[0]
        if not top or top == "caterva2":
            raise
        return _refuse(program, top)
    return main()


def cat2sub() -> int:
    return run(PROGRAMS["cat2sub"])


def cat2adduser() -> int:
    return run(PROGRAMS["cat2adduser"])


def cat2pub() -> int:
    return run(PROGRAMS["cat2pub"])


def cat2bro() -> int:
    return run(PROGRAMS["cat2bro"])


def cat2import() -> int:
    return run(PROGRAMS["cat2import"])


def cat2export() -> int:
    return run(PROGRAMS["cat2export"])
