"""A client-only install (`pip install caterva2`, no extra): the server programs say
which extra to install, in one line, instead of dying in a traceback.

The installed console scripts run in a child Python whose import system really
cannot find the server extras' modules (a meta-path finder refuses them, as an
install without them would): the programs under test are not touched.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from caterva2 import entry_points

from .services import REPO

# The import names of what only the server extras (and hdf5) install.
SERVER_ONLY = (
    "falcon",
    "waitress",
    "sqlite_utils",
    "pika",
    "watchdog",
    "jinja2",
    "markdown_it",
    "PIL",
    "h5py",
    "hdf5plugin",
)

HIDE = """
import importlib.abc, runpy, sys
hidden = set(sys.argv.pop(1).split(","))
class Uninstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Uninstalled())
for name in list(sys.modules):
    if name.split(".")[0] in hidden:
        del sys.modules[name]
script = sys.argv[0] = sys.argv.pop(1)
runpy.run_path(script, run_name="__main__")
"""

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def script(name: str) -> Path:
    """The console script pip installed for `name`, next to this Python."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{path} is not installed: make install"
    return path


def run_without(hidden, program: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HIDE, ",".join(hidden), str(script(program)), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "program, extra",
    [
        ("cat2sub", "subscriber"),
        ("cat2pub", "publisher"),
        ("cat2bro", "subscriber"),
        ("cat2adduser", "subscriber"),
        ("cat2import", "hdf5"),
        ("cat2export", "hdf5"),
    ],
)
def test_server_programs_name_the_extra_to_install(program, extra):
    result = run_without(SERVER_ONLY, program, "--help")
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"{program}: needs the '{extra}' extra")
    assert lines[0].endswith(f"pip install 'caterva2[{extra}]'")


def test_the_client_itself_runs_without_the_extras():
    result = run_without(SERVER_ONLY, "cat2cli", "--version")
    assert (result.returncode, result.stdout.strip()) == (0, "2025.8.7"), result.stderr


def test_with_the_extras_the_programs_run_as_before():
    result = run_without((), "cat2bro", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: cat2bro")


def test_a_dependency_missing_from_the_list_is_still_one_line(tmp_path):
    """A module the program needs that `needs` forgot: caught when it fails to import."""
    code = (
        "import sys\n"
        "from caterva2 import entry_points as e\n"
        "p = e.Program('cat2bro', 'subscriber', 'caterva2.broker.cli:main', ())\n"
        "sys.exit(e.run(p))\n"
    )
    (tmp_path / "forgetful").write_text(code)
    result = subprocess.run(
        [sys.executable, "-c", HIDE, "pika", str(tmp_path / "forgetful")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "cat2bro: needs the 'subscriber' extra, which is not installed (missing: pika): "
        "pip install 'caterva2[subscriber]'\n"
    )


def test_scripts_start_through_the_guard():
    scripts = PYPROJECT["project"]["scripts"]
    for name, program in entry_points.PROGRAMS.items():
        assert scripts[name] == f"caterva2.entry_points:{name}"
        module, _, function = program.target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
    assert scripts["cat2cli"] == "caterva2.cli:main"  # the client needs no guard


def test_each_program_needs_what_its_extra_installs():
    """The guard's lists agree with pyproject's extras (import name -> distribution)."""
    dists = importlib.metadata.packages_distributions()
    extras = PYPROJECT["project"]["optional-dependencies"]
    for program in entry_points.PROGRAMS.values():
        names = {re.split(r"[<>=\[; ]", req)[0].lower() for req in extras[program.extra]}
        for module in program.needs:
            provided = {d.lower() for d in dists[module]}
            assert provided & names, (program.name, module)
