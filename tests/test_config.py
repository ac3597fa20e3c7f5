"""Configuration: the TOML file, sizes, addresses and the subscriber's settings."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from caterva2.common.config import ConfigError, load_config, parse_http, parse_size, section
from caterva2.publisher import server as publisher_server
from caterva2.subscriber import server as subscriber_server
from caterva2.subscriber.settings import build_settings


@pytest.mark.parametrize(
    ("text", "size"),
    [("10G", 10 * 1024**3), ("1.5m", 1572864), ("2048", 2048), ("300K", 307200), (None, None)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


def test_parse_size_rejects_garbage():
    with pytest.raises(ConfigError, match="invalid size"):
        parse_size("ten gigs")


def test_parse_http():
    assert parse_http("localhost:8000") == ("localhost", 8000)
    assert parse_http("[::1]:8000") == ("::1", 8000)
    assert parse_http("/tmp/sub.sock") == "/tmp/sub.sock"


def test_missing_default_file_is_empty_but_missing_explicit_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config() == {}
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_sections_with_ids_overlay_the_base(tmp_path):
    conf_file = tmp_path / "caterva2.toml"
    conf_file.write_text(
        '[subscriber]\nhttp = "a:1"\nquota = "1G"\n[subscriber.two]\nhttp = "b:2"\n'
    )
    conf = load_config(conf_file)
    assert section(conf, "subscriber") == {"http": "a:1", "quota": "1G"}
    assert section(conf, "subscriber", "two") == {"http": "b:2", "quota": "1G"}


def test_flags_override_the_file(monkeypatch):
    monkeypatch.setenv("CATERVA2_SECRET", "x")
    settings = build_settings(
        {"http": "a:1", "quota": "1K", "login": False, "urlbase": "http://h/demo/"},
        {"http": "b:2", "quota": None},
    )
    assert settings.http == "b:2" and settings.quota == 1024 and settings.login is False
    assert settings.url_prefix == "/demo" and settings.secret == "x"


@pytest.mark.parametrize(
    "http, urlbase",
    [
        (None, "http://localhost:8000"),
        ("127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("0.0.0.0:9000", "http://localhost:9000"),
        ("[::1]:9001", "http://[::1]:9001"),
        ("/run/caterva2.sock", "http://localhost:8000"),
    ],
)
def test_urlbase_follows_the_http_address_unless_configured(monkeypatch, http, urlbase):
    monkeypatch.setenv("CATERVA2_SECRET", "x")
    assert build_settings({}, {"http": http}).urlbase == urlbase
    configured = build_settings({"urlbase": "https://data.example.org/"}, {"http": http})
    assert configured.urlbase == "https://data.example.org"


def test_invalid_toml_is_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[subscriber\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


# --- the sample configuration files (doc/examples) ------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "doc" / "examples"
SAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))
# Sections and keys read outside the daemons' own loaders (cat2cli, the broker connection).
OTHER_SECTIONS = {"client": {"username", "password"}, "broker": {"url", "ca_file"}}
TABLES = {"root_owners", "upstreams", "cache_quotas"}


def uncommented(text: str) -> str:
    """The sample with its commented-out settings (`# key = value`) switched on too."""
    return re.sub(r"(?m)^# ([a-z_]+ = )", r"\1", text)


def load_sample(path: Path, monkeypatch) -> list:
    """Load a sample with the real loader of the daemon it is for; the settings."""
    conf = load_config(path)
    if "subscriber" in conf:
        monkeypatch.setenv("CATERVA2_SECRET", "sample-secret")
        return [
            subscriber_server.load_settings(
                subscriber_server.build_parser().parse_args(["--conf", str(path)])
            )
        ]
    ids = [k for k, v in conf["publisher"].items() if isinstance(v, dict)]
    return [
        publisher_server.load_settings(
            publisher_server.build_parser().parse_args(
                ["--conf", str(path), *(["--id", ident] if ident else [])]
            )
        )
        for ident in [None, *ids]
    ]


def test_there_are_samples_for_both_daemons():
    assert {p.name for p in SAMPLES} >= {"caterva2-subscriber.toml", "caterva2-publisher.toml"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("commented", [False, True], ids=["as-is", "commented-in"])
def test_sample_loads_and_uses_only_known_keys(sample, commented, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(REPO_ROOT)  # the samples name root-example/ relative to the checkout
    for env in ("CATERVA2_BROKER_URL", "CATERVA2_BROKER_CA", "CATERVA2_PUBLISHER_CA"):
        monkeypatch.setenv(env, "")  # restored after the test (use_ca_file sets one)
    text = sample.read_text()
    assert text.lstrip().startswith("#"), "a sample says what it is for"
    if commented:
        text = uncommented(text)
        for name in re.findall(r'(?m)^(?:publisher_ca_file|ca_file) = "([^"]+)"', text):
            (tmp_path / name).write_text("not read here\n")
            text = text.replace(f'"{name}"', f'"{tmp_path / name}"')
    path = tmp_path / sample.name
    path.write_text(text)
    caplog.set_level(logging.WARNING)
    settings = load_sample(path, monkeypatch)
    assert settings and all(s is not None for s in settings)
    assert [r.getMessage() for r in caplog.records if "unknown setting" in r.getMessage()] == []
    conf = load_config(path)
    for name, keys in OTHER_SECTIONS.items():
        assert set(conf.get(name, {})) <= keys, name
    assert set(conf) <= {"subscriber", "publisher", *OTHER_SECTIONS, *TABLES}


def test_an_unknown_key_is_named_not_ignored_silently(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CATERVA2_SECRET", "x")
    (tmp_path / "c.toml").write_text('[subscriber]\nquota = "1G"\nqouta = "2G"\nurl = "http://x"\n')
    caplog.set_level(logging.WARNING)
    args = subscriber_server.build_parser().parse_args(["--conf", str(tmp_path / "c.toml")])
    subscriber_server.load_settings(args)
    unknown = [r.getMessage() for r in caplog.records if "unknown setting" in r.getMessage()]
    assert unknown == ["unknown setting 'qouta' in [subscriber] (ignored)"]  # url: cat2cli's


def test_silent_after_is_seconds_and_a_negative_one_is_refused():
    assert build_settings({}, {}).silent_after == 30
    assert build_settings({"silent_after": 0}, {}).silent_after == 0  # never poll
    assert build_settings({"silent_after": "90"}, {}).silent_after == 90
    with pytest.raises(ConfigError, match="silent_after must not be negative"):
        build_settings({"silent_after": -1}, {})
