"""`cat2cli`: command-line client of a Caterva2 subscriber."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import re
import secrets
import string
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

import caterva2
from caterva2 import api_utils, cli_tree
from caterva2.common import config
from caterva2.http_errors import APIError

DEFAULT_CONF = "caterva2.toml"
DATASET_HELP = "path of a dataset or file, e.g. @public/ds-1d.b2nd"

# Transfers smaller than this finish before a bar would be worth drawing.
PROGRESS_THRESHOLD = 4 * 1024 * 1024

_SHOW_ARG = re.compile(r"^(?P<path>[^\[]+)\[(?P<key>.*)\]$", re.DOTALL)


class CLIError(Exception):
    """An error worth one line on stderr (no traceback)."""


class _Parser(argparse.ArgumentParser):
    """Argument parser that reports errors as ``Error: ...`` with status 1."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(1, f"Error: {message}\n")


# --- configuration and client ---------------------------------------------


def load_config(path: str | None) -> dict:
    """Read the TOML configuration (``caterva2.toml`` in cwd if not given)."""
    try:
        return config.load_config(path)
    except config.ConfigError as exc:
        raise CLIError(f"Configuration: {exc}") from None


def _setting(args: argparse.Namespace, conf: dict, name: str, section: str, key: str) -> Any:
    value = getattr(args, name)
    return value if value is not None else conf.get(section, {}).get(key)


class _Session:
    """Settings of one invocation; the client logs in only when first needed."""

    def __init__(self, args: argparse.Namespace) -> None:
        conf = load_config(args.conf)
        url = _setting(args, conf, "subscriber", "subscriber", "url")
        self.urlbase: str = (url or caterva2.sub_urlbase_default).rstrip("/")
        if not self.urlbase.startswith(("http://", "https://")):
            raise CLIError(f"Subscriber URL must start with http:// or https://: {self.urlbase}")
        self.username = _setting(args, conf, "username", "client", "username")
        self.password = _setting(args, conf, "password", "client", "password")
        self._client: caterva2.Client | None = None

    @property
    def client(self) -> caterva2.Client:
        if self._client is None:
            auth = (self.username, self.password) if self.username and self.password else None
            try:
                self._client = caterva2.Client(self.urlbase, auth)
            except APIError as exc:
                # The login URL says nothing a user typed: name the account instead.
                raise CLIError(
                    f"login as {self.username} at {self.urlbase} failed: {exc.detail} "
                    f"(HTTP {exc.status_code})"
                ) from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --- progress bars --------------------------------------------------------


class _ProgressBar:
    """Progress callback drawing a bar (tqdm or rich) for big transfers only."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self._bar: Any = None
        self._started = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self._started:
            self._started = True
            if total is not None and total >= PROGRESS_THRESHOLD and sys.stderr.isatty():
                self._bar = _make_bar(self.desc, total)
        if self._bar is not None:
            self._bar(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _make_bar(desc: str, total: int) -> Any:
    # Both libraries are optional: without them, transfers are just silent.
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        return _TqdmBar(tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr))
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        return None
    return _RichBar(Progress(console=Console(stderr=True)), desc, total)


class _TqdmBar:
    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, done: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _RichBar:
    def __init__(self, progress: Any, desc: str, total: int) -> None:
        self.progress = progress
        self.progress.start()
        self.task = progress.add_task(desc, total=total)

    def __call__(self, done: int) -> None:
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        self.progress.stop()


# --- output helpers -------------------------------------------------------


def _print_json(data: Any) -> None:
    print(json.dumps(data))


def _pretty(data: Any) -> None:
    try:
        from rich.pretty import pprint
    except ImportError:
        from pprint import pprint
    pprint(data)


def _print_data(data: Any) -> None:
    """Print an array, or the text of a byte stream (``Binary data`` if not text)."""
    data = cli_tree.materialized(data)
    if isinstance(data, bytes):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            print("Binary data")
            return
        print(text, end="" if text.endswith("\n") else "\n")
        return
    print(data)


# --- commands -------------------------------------------------------------


def cmd_roots(session: _Session, args: argparse.Namespace) -> None:
    """List the roots of the server."""
    roots = session.client.get_roots()
    if args.json:
        _print_json(roots)
        return
    for name, root in roots.items():
        # The special `@` roots are always followed: marking them says nothing.
        followed = isinstance(root, dict) and root.get("subscribed") and not name.startswith("@")
        sync = _sync_text(root.get("sync")) if followed else ""
        print(f"{name} (subscribed{sync})" if followed else name)


def _sync_text(sync: object) -> str:
    """`, syncing: 120 datasets` (a followed remote root's progress), or nothing."""
    if not isinstance(sync, dict) or "state" not in sync:
        return ""
    text = f", {sync['state']}: {sync.get('datasets', '?')} datasets"
    return text + (f" ({sync['error']})" if sync.get("error") else "")


def cmd_cache(session: _Session, args: argparse.Namespace) -> None:
    """Show what the subscriber's chunk cache holds of each remote root."""
    roots = {
        name: root["cache"]
        for name, root in session.client.get_roots().items()
        if isinstance(root, dict) and isinstance(root.get("cache"), dict)
    }
    if args.json:
        _print_json(roots)
        return
    for name, cache in roots.items():
        ratio = cache.get("hit_ratio")
        print(
            f"{name}: {cache.get('bytes', 0)} bytes, "
            f"hit ratio {'-' if ratio is None else f'{ratio:.1%}'}, "
            f"{cache.get('evictions', 0)} evictions" + (" (pinned)" if cache.get("pinned") else "")
        )


def cmd_subscribe(session: _Session, args: argparse.Namespace) -> None:
    """Ask the server to follow a root."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = session.client.subscribe(args.root)
    for warning in caught:
        print(f"Warning: {warning.message}", file=sys.stderr)
    print(answer if isinstance(answer, str) else json.dumps(answer))
    # A remote root is followed in the background: say how far it got.
    root = session.client.get_roots().get(args.root.split("/", 1)[0])
    if isinstance(root, dict) and isinstance(root.get("sync"), dict):
        print(f"{args.root}{_sync_text(root['sync'])} (see `cat2cli roots`)")


def cmd_list(session: _Session, args: argparse.Namespace) -> None:
    """List the datasets below a root or directory."""
    paths = session.client.get_list(args.root)
    if args.json:
        _print_json(paths)
        return
    for path in paths:
        print(path)


def cmd_url(session: _Session, args: argparse.Namespace) -> None:
    """Print the URL that fetches a dataset."""
    url = api_utils.get_download_url(args.dataset, session.urlbase)
    print(json.dumps(url) if args.json else url)


def cmd_info(session: _Session, args: argparse.Namespace) -> None:
    """Print the metadata of a dataset."""
    if args.json:
        _print_json(session.client.get_info(args.dataset))
        return
    print(f"Getting info for {args.dataset}")
    _pretty(session.client.get_info(args.dataset))


def cmd_show(session: _Session, args: argparse.Namespace) -> None:
    """Print the data of a dataset, a slice (``ds[0:5]``) or a filter (``ds[a < 5]``)."""
    show = _print_data
    if args.json:

        def show(data: Any) -> None:
            print(json.dumps(cli_tree.plain_values(data), default=cli_tree.json_value))

    match = _SHOW_ARG.match(args.dataset)
    path, text = (args.dataset, None) if match is None else (match.group("path"), match["key"])
    if path.endswith(".b2z") or args.sort_by:
        _show_table(session.client.get(path), text, args, show)
        return
    if match is None:
        show(session.client.fetch(args.dataset))
        return
    try:
        key = api_utils.parse_slice(text)
    except ValueError:
        key = None
    else:
        show(session.client.fetch(path, slice_=key))
        return
    # Not a slice: a field name or a filter over a structured array.
    dataset = session.client.get(path)
    if not hasattr(dataset, "dtype"):
        raise CLIError(f"{path} is not an array: fields and filters need a structured array")
    show(dataset[text.strip()])


def cmd_tree(session: _Session, args: argparse.Namespace) -> None:
    """Print the datasets below a root, folder or container as a tree, like tree(1)."""
    paths = cli_tree.expanded_paths(session.client, args.path)
    if args.json:
        _print_json(paths)
        return
    for line in cli_tree.drawing(args.path, paths):
        print(line)


TABLE_HEAD = 10  # rows `show` prints of a table named without a selection


def _show_table(table: Any, text: str | None, args: argparse.Namespace, show: Any) -> None:
    """Print rows of a table: the first ones, a slice, or the rows a filter keeps, sorted.

    With --json, the rows as `{"columns": [...], "rows": [[...], ...]}`.
    """
    if not isinstance(table, caterva2.Table):
        raise CLIError(f"{table.path} is not a table: --sort-by sorts table rows only")
    rows: Any = slice(0, TABLE_HEAD) if text is None else None
    where = None
    if text is not None:
        try:
            rows = api_utils.parse_slice(text)
        except ValueError:
            where = text.strip()  # not a slice: a filter
    got = table.where(where, sort_by=args.sort_by, ascending=not args.descending, rows=rows)
    if args.json:
        show({"columns": list(table.columns), "rows": [list(row) for row in got]})
        return
    print(got)
    if text is None and table.nrows > got.nrows:
        print(f"... ({table.nrows} rows; show {table.path}[START:STOP] for others)")


def cmd_copy(session: _Session, args: argparse.Namespace) -> None:
    """Copy a dataset or directory."""
    result = session.client.copy(args.dataset, args.dest)
    print(f"Dataset {args.dataset} copied to {result}")


def cmd_move(session: _Session, args: argparse.Namespace) -> None:
    """Move a dataset or directory."""
    result = session.client.move(args.dataset, args.dest)
    print(f"Dataset {args.dataset} moved to {result}")


def cmd_remove(session: _Session, args: argparse.Namespace) -> None:
    """Remove a dataset or directory."""
    result = session.client.remove(args.dataset)
    print(f"Dataset (or directory contents) removed: {result}")


def cmd_download(session: _Session, args: argparse.Namespace) -> None:
    """Download a dataset to a local file."""
    bar = _ProgressBar(f"Downloading {args.dataset}")
    try:
        path = session.client.download(args.dataset, args.localpath, progress=bar)
    finally:
        bar.close()
    print(f"Dataset saved to {path}")


def cmd_upload(session: _Session, args: argparse.Namespace) -> None:
    """Upload a local file as a dataset."""
    local = pathlib.Path(args.localpath)
    if not local.is_file():
        raise CLIError(f"No such file: {local}")
    bar = _ProgressBar(f"Uploading {local.name}")
    try:
        path = session.client.upload(local, args.dataset, progress=bar)
    finally:
        bar.close()
    print(f"Dataset stored in {path}")


def _integers(text: str | None, what: str) -> tuple[int, ...] | None:
    """`1000,20` as (1000, 20); None stays None."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise CLIError(f"{what} must be integers separated by commas, not {text!r}") from None


def cmd_lay_out(session: _Session, args: argparse.Namespace) -> None:
    """Lay out an empty array to fill by chunks (unseen by readers until published)."""
    try:
        dtype = np.dtype(args.dtype)
    except TypeError:
        raise CLIError(f"{args.dtype!r} is not a NumPy dtype") from None
    shape = _integers(args.shape, "SHAPE")
    chunks, blocks = _integers(args.chunks, "--chunks"), _integers(args.blocks, "--blocks")
    array = session.client.lay_out(args.dataset, shape, dtype, chunks=chunks, blocks=blocks)
    print(
        f"Laid out {array.path}: shape {array.shape}, chunks {array.chunks}, "
        f"blocks {array.blocks}, {array.meta['nchunks']} chunks to fill"
    )


def cmd_fill_chunk(session: _Session, args: argparse.Namespace) -> None:
    """Write one compressed chunk (a file) into an unwritten slot of a laid-out array."""
    chunk = pathlib.Path(args.chunkfile).read_bytes()
    answer = session.client.fill_chunk(args.dataset, args.nchunk, chunk)
    print(
        f"Chunk {answer['nchunk']} written: {answer['written']}/{answer['nchunks']} "
        f"chunks, {answer['state']}"
    )


def cmd_written(session: _Session, args: argparse.Namespace) -> None:
    """Say which chunks of a laid-out array are written."""
    written = session.client.written_chunks(args.dataset)
    if args.json:
        _print_json(written.tolist())
        return
    marks = "".join("1" if done else "0" for done in written)
    print(f"{int(written.sum())}/{written.size} chunks written: {marks}")


def cmd_publish(session: _Session, args: argparse.Namespace) -> None:
    """Make a laid-out array, every chunk written, visible to readers."""
    print(f"Published {session.client.publish(args.dataset)}")


def cmd_adduser(session: _Session, args: argparse.Namespace) -> None:
    """Add a user (needs a superuser login)."""
    password = args.newpass or "".join(secrets.choice(string.ascii_letters) for _ in range(8))
    print(session.client.adduser(args.newuser, password, args.superuser))


def cmd_deluser(session: _Session, args: argparse.Namespace) -> None:
    """Delete a user (needs a superuser login)."""
    print(session.client.deluser(args.user))


def cmd_listusers(session: _Session, args: argparse.Namespace) -> None:
    """List users (or one user)."""
    users = session.client.listusers(args.user)
    if args.json:
        _print_json(users)
        return
    for user in users:
        print(user)


# --- parser ---------------------------------------------------------------


def _add(
    subparsers: Any,
    name: str,
    func: Callable[[_Session, argparse.Namespace], None],
    aliases: Sequence[str] = (),
    json_flag: bool = False,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, aliases=list(aliases), help=func.__doc__)
    parser.set_defaults(func=func)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="output JSON")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of `cat2cli`."""
    parser = _Parser(prog="cat2cli", description=__doc__)
    parser.add_argument("--version", action="version", version=caterva2.__version__)
    parser.add_argument("--conf", help=f"configuration file (default: ./{DEFAULT_CONF})")
    parser.add_argument(
        "--loglevel", default="warning", help="debug, info, warning (default) or error"
    )
    parser.add_argument(
        "--subscriber", help=f"subscriber URL (default: {caterva2.sub_urlbase_default})"
    )
    parser.add_argument("--username", help="user name to log in with")
    parser.add_argument("--password", help="password to log in with")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add(sub, "roots", cmd_roots, json_flag=True)
    _add(sub, "cache", cmd_cache, json_flag=True)
    _add(sub, "subscribe", cmd_subscribe).add_argument(
        "root", help="name of a remote root to follow"
    )
    _add(sub, "list", cmd_list, ["ls"], json_flag=True).add_argument(
        "root", help="a root or directory, e.g. @public or @public/dir1"
    )
    _add(sub, "url", cmd_url, json_flag=True).add_argument("dataset", help=DATASET_HELP)
    _add(sub, "info", cmd_info, json_flag=True).add_argument("dataset", help=DATASET_HELP)
    show = _add(sub, "show", cmd_show, json_flag=True)
    show.add_argument("dataset", help="DATASET or DATASET[SLICE|FILTER]")
    show.add_argument("--sort-by", help="tables: sort the rows by these columns (comma-separated)")
    show.add_argument("--descending", action="store_true", help="with --sort-by: largest first")
    _add(sub, "tree", cmd_tree, ["tr"], json_flag=True).add_argument(
        "path", help="a root, folder or container, e.g. @public or @public/dir/tree.b2z"
    )
    for name, func, aliases in (("copy", cmd_copy, ["cp"]), ("move", cmd_move, ["mv"])):
        p = _add(sub, name, func, aliases)
        p.add_argument("dataset", help="dataset or directory to " + name)
        p.add_argument("dest", help="where to, e.g. @personal/x.b2nd; ending in / keeps the name")
    _add(sub, "remove", cmd_remove, ["rm"]).add_argument(
        "dataset", help="dataset or directory to remove"
    )
    p = _add(sub, "download", cmd_download, json_flag=True)
    p.add_argument("dataset", help=DATASET_HELP)
    p.add_argument(
        "localpath", nargs="?", help="local file or directory (default: the dataset's path)"
    )
    p = _add(sub, "upload", cmd_upload)
    p.add_argument("localpath", help="local file to upload")
    p.add_argument("dataset", help="where to store it, e.g. @personal/x.b2nd or a directory")
    p = _add(sub, "lay-out", cmd_lay_out)
    p.add_argument("dataset", help="where, e.g. @personal/run.b2nd")
    p.add_argument("shape", help="the array's shape, e.g. 1000,20")
    p.add_argument("dtype", help="its NumPy dtype, e.g. float32")
    p.add_argument("--chunks", help="chunk shape, e.g. 100,20")
    p.add_argument("--blocks", help="block shape, e.g. 10,20")
    p = _add(sub, "fill-chunk", cmd_fill_chunk)
    p.add_argument("dataset", help="a laid-out array")
    p.add_argument("nchunk", type=int, help="which chunk")
    p.add_argument("chunkfile", help="a file holding the compressed chunk (blosc2.compress2)")
    _add(sub, "written", cmd_written, json_flag=True).add_argument(
        "dataset", help="a laid-out array"
    )
    _add(sub, "publish", cmd_publish).add_argument("dataset", help="a laid-out, filled array")
    p = _add(sub, "adduser", cmd_adduser)
    p.add_argument("--superuser", "-S", action="store_true", help="make a superuser")
    p.add_argument("newuser", help="the new user's email address")
    p.add_argument("newpass", nargs="?", help="password (default: 8 random letters)")
    _add(sub, "deluser", cmd_deluser).add_argument("user", help="email address of the user")
    _add(sub, "listusers", cmd_listusers, ["lsu"], json_flag=True).add_argument(
        "user", nargs="?", help="only this user (email address)"
    )
    return parser


def _describe(exc: BaseException, session: _Session | None) -> str:
    """One line saying what went wrong, for ``Error: ...``."""
    if isinstance(exc, APIError):
        # The path first: which of the command's paths failed, then why, in words.
        return f"{exc.path}: {exc.detail} (HTTP {exc.status_code})"
    if isinstance(exc, httpx.HTTPStatusError):
        return api_utils.error_detail(exc)
    if isinstance(exc, httpx.TransportError):
        where = session.urlbase if session is not None else "the subscriber"
        return f"cannot reach {where}: {exc}"
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `cat2cli`; exits with status 1 on any error."""
    args = build_parser().parse_args(argv)
    session = None
    try:
        logging.basicConfig(level=str(args.loglevel).upper(), force=True)
        session = _Session(args)
        args.func(session, args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CLIError, httpx.HTTPError, TimeoutError, OSError, ValueError, IndexError) as exc:
        print(f"Error: {_describe(exc, session)}", file=sys.stderr)
        sys.exit(1)
    finally:
        if session is not None:
            session.close()


if __name__ == "__main__":
    main()
