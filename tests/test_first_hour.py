"""What a new user meets in the first hour: make, CI, secrets, licence."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from caterva2.common import config

from .services import REPO

README = (REPO / "README.md").read_text()


def make_dry_run(*targets: str) -> str:
    """The commands `make` would run for `targets`, everything rebuilt (none is run)."""
    proc = subprocess.run(
        ["make", "-n", "-B", *targets], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_test_never_installs_system_packages():
    # -B: even with nothing installed yet, no step of `make test` touches the system.
    assert "apt-get" not in make_dry_run("test")
    assert "apt" not in re.findall(r"\b\w+\b", make_dry_run("test"))


def test_make_system_deps_says_what_it_installs_and_why_before_it_does():
    commands = make_dry_run("system-deps")
    install = commands.index("apt-get install")
    for program in ("docker-compose", "chromium", "rabbitmq-server", "openssl"):
        said = re.search(rf"echo \"  {program} +\S.*\"", commands)
        assert said and said.start() < install, program


def test_ci_runs_the_readme_test_command_after_the_explicit_system_step():
    ci = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    assert ci == ["make system-deps", "make test"]
    shell_blocks = "\n".join(re.findall(r"```sh\n(.*?)```", README, re.DOTALL))
    for command in ci:
        assert re.search(rf"^{command}\b", shell_blocks, re.MULTILINE), command
    assert "`.ci/run` runs `make system-deps`, then `make test`." in README


def test_dot_env_is_ignored_by_git():
    git = shutil.which("git")
    assert git is not None
    checked = subprocess.run(
        [git, "check-ignore", "-q", ".env"], cwd=REPO, capture_output=True, check=False
    )
    assert checked.returncode == 0, "the secret's file would be committed"


def test_docker_compose_config_never_prints_the_secret(tmp_path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed: `make system-deps`")
    compose = tmp_path / "docker-compose.yml"
    shutil.copy(REPO / "docker-compose.yml", compose)
    (tmp_path / ".env").write_text("CATERVA2_SECRET=from-dot-env-6f1c\n")
    env = {"PATH": "/usr/bin:/bin", "CATERVA2_SECRET": "from-environment-9d2e"}
    proc = subprocess.run(
        [exe, "-f", str(compose), "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "from-dot-env-6f1c" not in proc.stdout
    assert "from-environment-9d2e" not in proc.stdout
    # ... and each daemon still gets it, as a file.
    assert f"file: {tmp_path / '.env'}" in proc.stdout
    daemons = re.findall(r"^  (pub-\S+|sub-\S+):$", proc.stdout, re.MULTILINE)
    assert len(daemons) == 4
    assert proc.stdout.count("CATERVA2_SECRET_FILE: /run/secrets/caterva2-env") == len(daemons)
    assert proc.stdout.count("- source: caterva2-env") == len(daemons)


@pytest.mark.parametrize(
    "text",
    ["CATERVA2_SECRET=s3cret-from-file\n", "# made by make\nCATERVA2_SECRET='s3cret-from-file'\n"],
)
def test_the_secret_is_read_from_the_file_compose_mounts(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("CATERVA2_SECRET", raising=False)
    (tmp_path / "secret").write_text(text)
    monkeypatch.setenv("CATERVA2_SECRET_FILE", str(tmp_path / "secret"))
    assert config.secret_from_env() == "s3cret-from-file"
    (tmp_path / "secret").write_text("bare-value\n")
    assert config.secret_from_env() == "bare-value"
    monkeypatch.setenv("CATERVA2_SECRET", "the-environment-wins")
    assert config.secret_from_env() == "the-environment-wins"


def test_a_missing_secret_file_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CATERVA2_SECRET", raising=False)
    monkeypatch.setenv("CATERVA2_SECRET_FILE", str(tmp_path / "nope"))
    with pytest.raises(config.ConfigError, match="CATERVA2_SECRET_FILE .*nope"):
        config.secret_from_env()


def test_license_file_and_package_metadata_agree():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License\n")
    assert "the Caterva2 developers" in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
