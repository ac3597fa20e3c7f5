"""The OpenAPI 3.1 description of the subscriber's REST API (`/api/*`, `/auth/*`).

Built from the settings, so it names exactly the routes the app has (the user
routes only with logins, registration only when it is on); a test compares it
with the app's routes. Served at `/openapi.json`; `/docs` shows it as a page.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from .settings import SubscriberSettings

JSON = "application/json"
OCTETS = "application/octet-stream"
NPY = "application/x-npy"
BLOCKS = "application/x-caterva2-blocks"

ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"description": "A message, or a list of field errors (422)"}},
}
USER = {
    "type": "object",
    "required": ["id", "email", "is_active", "is_superuser", "is_verified"],
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string"},
        "is_active": {"type": "boolean"},
        "is_superuser": {"type": "boolean"},
        "is_verified": {"type": "boolean"},
    },
}
ROOT = {
    "type": "object",
    "required": ["name", "http", "subscribed"],
    "properties": {
        "name": {"type": "string"},
        "http": {"type": "string"},
        "subscribed": {"type": ["boolean", "null"]},
        "online": {"type": "boolean"},
        "cache": {
            "type": "object",
            "description": "Remote roots: what the chunk cache holds of it and how its reads went",
            "properties": {
                "bytes": {"type": "integer"},
                "hits": {"type": "integer"},
                "misses": {"type": "integer"},
                "hit_ratio": {"type": ["number", "null"]},
                "evictions": {"type": "integer"},
                "pinned": {"type": "boolean"},
                "quota": {"type": ["integer", "null"]},
            },
        },
    },
}
STRING = {"type": "string"}
SORT_BY = (
    "Tables (CTable `.b2z`) only: sort the rows by these columns (comma-separated, the "
    "primary key first), after `filter` and before `slice_`, which then selects sorted rows"
)
ASCENDING = "With `sort_by`: `true` (the default) for ascending order, `false` for descending"
URL_SCHEMA = {"type": "string", "format": "uri", "examples": ["https://example.org/data.b2nd"]}


INDICES = (
    "Coordinates, as JSON with one entry per axis: a list of integers, an integer, "
    '`"start:stop"` or null; answered as NumPy indexes (alone: not with the others)'
)


def _path_param(name: str, what: str, examples: list[str] | None = None) -> dict:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if examples:
        schema["examples"] = examples
    return {"name": name, "in": "path", "required": True, "description": what, "schema": schema}


PATH = _path_param(
    "path",
    "A logical path, `<root>/<folders>/<name>` (slashes included)",
    ["@public/ds-1d.b2nd", "@public/dir1/ds-3d.b2nd", "@public/README.md", "@personal"],
)
ROOT_NAME = _path_param("name", "A root's name")
NCHUNK = {
    "name": "nchunk",
    "in": "query",
    "required": True,
    "description": "The chunk's number",
    "schema": {"type": "integer"},
}
FILL_STATE = {"type": "string", "enum": ["filling", "complete", "published"]}
FILL_ANSWER = {
    "type": "object",
    "required": ["nchunk", "written", "nchunks", "state"],
    "properties": {
        "nchunk": {"type": "integer"},
        "written": {"type": "integer"},
        "nchunks": {"type": "integer"},
        "state": FILL_STATE,
    },
}
PROGRESS = {
    "type": "object",
    "required": ["nchunks", "written", "state", "chunks"],
    "properties": {
        "nchunks": {"type": "integer"},
        "written": {"type": "integer"},
        "state": FILL_STATE,
        "chunks": {"type": "string", "pattern": "^[01]*$"},
    },
}


def _query(name: str, what: str, schema: dict | None = None, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": what,
        "schema": schema or STRING,
    }


def _json_body(schema: dict) -> dict:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _object(required: list[str], **properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _answer(what: str, schema: dict | None = None, media: str = JSON, **extra: Any) -> dict:
    answer: dict[str, Any] = {"description": what}
    if schema is not None:
        answer["content"] = {media: {"schema": schema}}
    answer.update(extra)
    return answer


def _operation(
    summary: str,
    ok: dict,
    *,
    status: str = "200",
    parameters: list | None = None,
    body: dict | None = None,
    busy: bool = False,
) -> dict:
    """One operation: its answer, and the JSON errors every operation may give (4XX)."""
    responses = {status: ok, "4XX": _answer("A refused request, with a message", ERROR)}
    if busy:
        responses["503"] = _answer(
            "Over the time limit (`compute_timeout`), or a publisher is unreachable", ERROR
        )
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = body
    return op


def _multipart_file() -> dict:
    schema = _object(["file"], file={"type": "string", "contentMediaType": OCTETS})
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def _data_paths() -> dict[str, dict]:
    binary = {"type": "string", "contentMediaType": OCTETS}
    selection = {
        media: {"schema": {"type": "string", "contentMediaType": media}}
        for media in (OCTETS, NPY, BLOCKS)
    }
    return {
        "/api/roots": {
            "get": _operation(
                "The roots this user sees: @public, @personal, @shared and remote ones",
                _answer("Roots by name", {"type": "object", "additionalProperties": ROOT}),
            )
        },
        "/api/list/{path}": {
            "get": _operation(
                "The datasets below a root or folder (or the name of one dataset); a container "
                "file (.b2z TreeStore/DictStore, .h5; in remote roots .b2z only) or a group "
                "in one: its leaves",
                _answer("Logical names", {"type": "array", "items": STRING}),
                parameters=[PATH],
                busy=True,
            )
        },
        "/api/info/{path}": {
            "get": _operation(
                "A dataset's metadata; Blosc2 arrays also answer an ETag; a container or a "
                'group in one answers `{"kind": "group", "mtime", "size", "nfiles"}`',
                _answer("Metadata", {"type": "object"}),
                parameters=[PATH],
                busy=True,
            )
        },
        "/api/fetch/{path}": {
            "get": _operation(
                "A selection of a dataset: a Blosc2 frame, .npy or stored blocks (see `Accept`)",
                {"description": "The selection", "content": selection},
                parameters=[
                    PATH,
                    _query(
                        "slice_",
                        "NumPy-style selection, e.g. `0:10,3`",
                        {"type": "string", "examples": ["0:3", "1", "0:2,1:3", ":,-1"]},
                    ),
                    _query("field", "One field of a structured array"),
                    _query(
                        "filter",
                        "A condition on the fields (a table's: columns), e.g. `(x > 3) & (y < 2)`",
                    ),
                    _query("indices", INDICES, {"type": "string", "examples": ['[[0,2],"1:3"]']}),
                    _query("sort_by", SORT_BY, {"type": "string", "examples": ["b", "b,a"]}),
                    _query("ascending", ASCENDING, {"type": "string", "enum": ["true", "false"]}),
                ],
                busy=True,
            ),
            "post": _operation(
                "The same as GET, its parameters in a JSON body (coordinates too many for a URL)",
                {"description": "The selection", "content": selection},
                parameters=[PATH],
                body=_json_body(
                    {
                        "type": "object",
                        "properties": {
                            name: STRING
                            for name in (
                                "slice_",
                                "field",
                                "filter",
                                "indices",
                                "sort_by",
                                "ascending",
                            )
                        },
                    }
                ),
                busy=True,
            ),
        },
        "/api/chunk/{path}": {
            "get": _operation(
                "One chunk as stored (compressed); `If-Match` names the version wanted",
                _answer("The chunk", binary, OCTETS),
                parameters=[PATH, NCHUNK],
                busy=True,
            ),
            "post": _operation(
                "Write one compressed chunk (the body) into an unwritten slot of a laid-out "
                "array (409 when it is written already; 400 for another geometry)",
                _answer("The array's progress", FILL_ANSWER),
                parameters=[PATH, NCHUNK],
                body={"required": True, "content": {OCTETS: {"schema": binary}}},
            ),
        },
        "/api/written_chunks/{path}": {
            "get": _operation(
                "Which chunks of a laid-out, unpublished array are written",
                _answer("Its progress, `chunks` one 0/1 a chunk", PROGRESS),
                parameters=[PATH],
            )
        },
        "/api/publish/{path}": {
            "post": _operation(
                "Move a laid-out array, every chunk written, into its root: visible at once",
                _answer("Where it is", _object(["published"], published=STRING)),
                parameters=[PATH],
            )
        },
        "/api/download/{path}": {
            "get": _operation(
                "A whole dataset as a file (regular files decompressed)",
                _answer("The file", {"type": "string"}, "*/*"),
                parameters=[PATH],
                busy=True,
            )
        },
        "/api/upload/{path}": {
            "post": _operation(
                "Store a file at a logical path (a folder: under the file's own name); an "
                "array with no chunk written (`blosc2.uninit`) is laid out for chunked "
                "ingestion instead, unseen by readers until published",
                _answer("Where it was stored", STRING),
                parameters=[PATH],
                body=_multipart_file(),
            )
        },
        "/api/append/{path}": {
            "post": _operation(
                "Append the rows of an uploaded array frame to an array, along axis 0",
                _answer("The new shape", {"type": "array", "items": {"type": "integer"}}),
                parameters=[PATH],
                body=_multipart_file(),
                busy=True,
            )
        },
        "/api/remove/{path}": {
            "post": _operation(
                "Delete a dataset or a folder's contents",
                _answer("What was removed", STRING),
                parameters=[PATH],
            )
        },
        "/api/move": {
            "post": _operation(
                "Move a dataset",
                _answer("The new path", STRING),
                body=_json_body(_object(["src", "dst"], src=STRING, dst=STRING)),
            )
        },
        "/api/copy": {
            "post": _operation(
                "Copy a dataset",
                _answer("The new path", STRING),
                body=_json_body(_object(["src", "dst"], src=STRING, dst=STRING)),
            )
        },
        "/api/load_from_url/{path}": {
            "post": _operation(
                "Fetch a dataset from an http(s) URL into a writable path (a folder: under the "
                "URL's file name); private addresses are refused unless configured",
                _answer("Where it was stored", STRING),
                parameters=[PATH],
                body={
                    "required": True,
                    "content": {
                        media: {"schema": _object(["remote_url"], remote_url=URL_SCHEMA)}
                        for media in ("application/x-www-form-urlencoded", JSON)
                    },
                },
            )
        },
        "/api/unfold/{path}": {
            "post": _operation(
                "Unfold an HDF5 file into a folder of datasets",
                _answer("The new folder", STRING),
                parameters=[PATH],
                busy=True,
            )
        },
        "/api/lazyexpr": {
            "post": _operation(
                "Save an expression over datasets as @personal/<name>.b2nd (computed if asked)",
                _answer("The saved dataset", STRING),
                body=_json_body(
                    _object(
                        ["name", "expression", "operands", "compute"],
                        name=STRING,
                        expression=STRING,
                        operands={"type": "object", "additionalProperties": STRING},
                        compute={"type": "boolean"},
                    )
                ),
                busy=True,
            )
        },
        **{
            f"/api/{verb}": {
                "post": _operation(
                    f"{verb.title()} arrays into a new dataset",
                    _answer("The new dataset", STRING),
                    body=_json_body(
                        _object(
                            ["srcs", "dst", "axis"],
                            srcs={"type": "array", "items": STRING},
                            dst=STRING,
                            axis={"type": "integer"},
                        )
                    ),
                    busy=True,
                )
            }
            for verb in ("concat", "stack")
        },
        "/api/subscribe/{name}": {
            "post": _operation(
                "Follow a remote root (`mirror`: replicate it); needs a login",
                _answer("Done", {"const": "Ok"}),
                parameters=[ROOT_NAME, _query("mirror", "Replicate it", {"type": "boolean"})],
            )
        },
        "/api/unsubscribe/{name}": {
            "post": _operation(
                "Stop following a remote root and drop its cache; superusers only",
                _answer("Done", {"const": "Ok"}),
                parameters=[ROOT_NAME],
            )
        },
    }


def _user_paths(register: bool) -> dict[str, dict]:
    form = _object(["username", "password"], username=STRING, password=STRING)
    paths = {
        "/auth/jwt/login": {
            "post": _operation(
                "Log in: the answer sets the `c2subauth` cookie (throttled: 429 after failures)",
                _answer("Logged in (see Set-Cookie)"),
                status="204",
                body={
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": form}},
                },
            )
        },
        "/auth/jwt/logout": {
            "post": _operation("End this session", _answer("Logged out"), status="204")
        },
        "/auth/forgot-password": {
            "post": _operation(
                "Mail a password-reset link (answered the same for unknown accounts)",
                _answer("Accepted", {"type": "null"}),
                status="202",
                body=_json_body(_object(["email"], email=STRING)),
            )
        },
        "/auth/reset-password": {
            "post": _operation(
                "Set a new password with the token of a reset link",
                _answer("Done", {"type": "null"}),
                body=_json_body(_object(["token", "password"], token=STRING, password=STRING)),
            )
        },
        "/api/adduser": {
            "post": _operation(
                "Add an account; superusers only",
                _answer("What was done", STRING),
                body=_json_body(
                    _object(
                        ["username", "password", "superuser"],
                        username=STRING,
                        password={"type": ["string", "null"]},
                        superuser={"type": "boolean"},
                    )
                ),
            )
        },
        "/api/deluser/{username}": {
            "get": _operation(
                "Delete an account and its @personal; superusers only",
                _answer("What was done", STRING),
                parameters=[_path_param("username", "The account's email")],
            )
        },
        "/api/listusers": {
            "get": _operation(
                "The accounts (one, with `username`); superusers only",
                _answer("Accounts", {"type": "array", "items": USER}),
                parameters=[_query("username", "Only this account")],
            )
        },
    }
    if register:
        paths["/auth/register"] = {
            "post": _operation(
                "Create an account",
                _answer("The new account", USER),
                status="201",
                body=_json_body(_object(["email", "password"], email=STRING, password=STRING)),
            )
        }
    return paths


def openapi_document(settings: SubscriberSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this subscriber's REST API."""
    paths = _data_paths()
    if settings.login:
        paths.update(_user_paths(settings.register))
    try:
        version = metadata.version("caterva2")
    except metadata.PackageNotFoundError:
        version = "unknown"
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Caterva2 subscriber",
            "version": version,
            "description": (
                "Blosc2 and HDF5 datasets of local and remote roots. State-changing requests "
                "from browsers must come from this site's own pages (Sec-Fetch-Site/Origin)."
            ),
        },
        "servers": [{"url": settings.urlbase or "/"}],
        "paths": dict(sorted(paths.items())),
    }
    if settings.login:
        doc["components"] = {
            "securitySchemes": {"cookie": {"type": "apiKey", "in": "cookie", "name": "c2subauth"}}
        }
        doc["security"] = [{}, {"cookie": []}]  # anonymous, or logged in
    return doc
