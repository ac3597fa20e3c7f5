"""Configuration: the TOML file, sizes, addresses and the subscriber's settings."""

from __future__ import annotations

import pytest

from caterva2.common.config import ConfigError, load_config, parse_http, parse_size, section
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
