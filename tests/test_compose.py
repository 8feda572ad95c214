"""docker-compose.yml, Dockerfile and .env.example: valid, complete, and every command exists in the project."""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import Settings
from tasks.__main__ import _parser as tasks_parser
from tasks.celery_app import QUEUES
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
# The variables DESIGN.md promises (all settable in settings.toml too).
DESIGN_VARIABLES = [
    "REDIS_URL", "TEMP_DIR", "STORAGE_DIR", "SETTINGS_FILE", "TELEGRAM_TOKEN", "TELEGRAM_API_URL", "TELEGRAM_FILE_URL",
    "TELEGRAM_ADMIN_IDS", "DISCORD_TOKEN", "DISCORD_API_URL", "DISCORD_GATEWAY_URL", "DISCORD_GUILD_ID",
    "DISCORD_ADMIN_IDS", "NETWORK_ALLOWLIST", "MAX_DURATION", "MP3_BITRATE",
    # YouTube on a server (issue 9)
    "POT_PROVIDER_URL", "COOKIES_FILE", "PROXY_URL", "PROXY_ONLY", "ROUTE_REST", "YTDLP_EXTRACTOR_ARGS",
    "ALERT_INTERVAL",
    "LOUDNESS",  # issue 12
]

NOT_SETTINGS = {"SETTINGS_FILE", "FLOWER_BASIC_AUTH"}  # read before the settings / by Flower itself


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def argv(service: dict[str, Any]) -> list[str]:
    """The command the service runs in the end (a `sh -c` guard's `exec` line for a wrapped one)."""
    command = service["command"]
    args = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    if args[:2] == ["sh", "-c"]:
        return shlex.split(args[2].rpartition("exec ")[2])
    return args


def ours(service: dict[str, Any]) -> bool:
    """Built from this project's Dockerfile (not a stock image)."""
    return "build" in service


def check_command(args: list[str]) -> None:
    """The command names a module, subcommand and options this project has."""
    if args[:2] == ["python", "-m"] and args[2] == "tasks":
        tasks_parser().parse_args(args[3:])  # exits (SystemExit) on an unknown command or option
        if "-Q" in args:
            assert set(args[args.index("-Q") + 1].split(",")) <= set(QUEUES)
    elif args[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(f"{args[2]}.__main__") is not None, args
        shown = subprocess.run([sys.executable, "-m", *args[2:], "--help"], cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, f"{args}: {shown.stderr}"
    elif args[0] == "celery":
        app = importlib.import_module(args[args.index("-A") + 1])
        assert hasattr(app, "app") and ("worker" in args or "flower" in args), args
        if "-Q" in args:
            assert set(args[args.index("-Q") + 1].split(",")) <= set(QUEUES)
    else:
        raise AssertionError(f"unknown command {args}")


def test_every_project_service_runs_a_command_of_the_project(compose: dict[str, Any]) -> None:
    services = compose["services"]
    built = {name: s for name, s in services.items() if ours(s)}
    assert set(built) == {"worker-download", "worker-conversion", "worker-cleanup", "telegram", "discord", "flower",
                          "metrics"}
    for service in built.values():
        check_command(argv(service))
    for queue in QUEUES:
        args = argv(services[f"worker-{queue}"])
        assert args[args.index("-Q") + 1] == queue  # one queue per service: each scales on its own
        assert args[args.index("-n") + 1] == f"{queue}@%h"
    assert argv(services["telegram"])[-2:] == ["bots", "telegram"]
    assert argv(services["discord"])[-2:] == ["bots", "discord"]


def test_redis_persists_and_reports_its_health(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:")
    command = " ".join(argv(redis))
    assert "--appendonly yes" in command
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_workers_and_bots_share_files_wait_for_redis_and_scale(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    for name, service in compose["services"].items():
        if not ours(service):
            continue
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        if name not in ("flower", "metrics"):  # the web pages, with a published port
            assert "container_name" not in service and "ports" not in service, f"{name} must scale with --scale"
        mounts = dict(volume.split(":")[:2] for volume in service["volumes"])
        shared = mounts.get("media")
        assert shared and "media" in volumes, name
        environment = service["environment"]
        assert environment["TEMP_DIR"].startswith(shared + "/") and environment["STORAGE_DIR"].startswith(shared + "/")
        assert "redis://redis:6379" in environment["REDIS_URL"]
        assert service["env_file"] == ".env"


def test_workers_have_a_memory_limit_without_swap(compose: dict[str, Any]) -> None:
    """A link that needs too much memory meets the OOM killer in its own container, not the machine's."""
    for queue in QUEUES:
        service = compose["services"][f"worker-{queue}"]
        limit = service["mem_limit"]
        assert re.fullmatch(rf"\$\{{{queue.upper()}_MEMORY:-\d+[mg]\}}", limit), limit
        assert service["memswap_limit"] == limit  # swap would only make it slower to die


def test_bots_flower_and_metrics_are_optional_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["telegram"]["profiles"] == ["telegram"]
    assert services["discord"]["profiles"] == ["discord"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["metrics"]["profiles"] == ["metrics"]
    assert argv(services["metrics"])[:4] == ["python", "-m", "tasks", "metrics"]
    assert argv(services["flower"])[:4] == ["celery", "-A", "tasks", "flower"]  # with this app's broker options
    assert services["flower"]["build"]["args"]["EXTRA_PACKAGES"].startswith("flower==")
    for name in ("redis", "worker-download", "worker-conversion", "worker-cleanup"):
        assert "profiles" not in services[name]


def test_flower_listens_on_this_machine_only_and_needs_a_login(compose: dict[str, Any], tmp_path: Path) -> None:
    flower = compose["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    script = flower["command"][2].replace("$$", "$")  # as docker-compose hands it to the container
    celery = tmp_path / "celery"  # stands in for Flower: shows what it was started with
    celery.write_text('#!/bin/sh\necho "celery $* login=$FLOWER_BASIC_AUTH"\n')
    celery.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    for login in (None, ""):
        refused = subprocess.run(["sh", "-c", script], env={**env, **({} if login is None else
                                                                      {"FLOWER_BASIC_AUTH": login})},
                                 capture_output=True, text=True, timeout=10)
        assert refused.returncode != 0 and "celery" not in refused.stdout
        assert "set FLOWER_BASIC_AUTH=user:password" in refused.stderr
    started = subprocess.run(["sh", "-c", script], env={**env, "FLOWER_BASIC_AUTH": "admin:secret"},
                             capture_output=True, text=True, timeout=10)
    assert started.stdout.strip() == "celery -A tasks flower --port=5555 login=admin:secret", started.stderr


def test_the_po_token_provider_runs_beside_the_workers_inside_the_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pot = services["pot"]
    plugin = next(line.split("==")[1] for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.startswith("bgutil-ytdlp-pot-provider=="))
    assert pot["image"] == f"brainicism/bgutil-ytdlp-pot-provider:{plugin}"  # server and plugin upgraded together
    assert "ports" not in pot and "profiles" not in pot  # unauthenticated: never published; always on
    for name, service in services.items():
        if ours(service):  # the doctor and /health see what the workers use
            assert service["environment"]["POT_PROVIDER_URL"] == "${POT_PROVIDER_URL-http://pot:4416}", name
    for queue in QUEUES:
        depends = services[f"worker-{queue}"]["depends_on"]
        assert depends["pot"]["condition"] == "service_started"
        assert depends["redis"]["condition"] == "service_healthy"


def test_the_image_runs_as_a_user_who_can_run_deno_from_the_requirements() -> None:
    text = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user == ["ytmp3"]
    after_user = text.split("USER ytmp3", 1)[1]
    assert "RUN deno --version" in after_user and "HOME=/home/ytmp3" in after_user
    assert "deno.land" not in text and "curl" not in text  # deno comes from requirements.txt, nowhere else
    assert any(line.startswith("deno==") for line in (ROOT / "requirements.txt").read_text().splitlines())


def test_dockerfile_is_slim_python_with_ffmpeg_and_the_requirements() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"apt-get install .*ffmpeg", text)
    assert "pip install -r requirements.txt" in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".env", "data", "tests"} <= set(ignored)


def test_env_example_names_every_variable_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    named = {}
    for number, line in enumerate(lines):
        found = re.match(r"^#?\s?([A-Z][A-Z0-9_]+)=(.*)$", line)
        if found:
            named[found.group(1)] = number
            assert line.startswith("#") or found.group(2), f"{line!r}: an empty value would override the default"
            assert lines[number - 1].startswith("#"), f"{found.group(1)} has no comment above it"
    missing = [name for name in DESIGN_VARIABLES if name not in named]
    assert not missing, f".env.example lacks {missing}"
    known = {field.upper() for field in Settings.model_fields} | NOT_SETTINGS
    assert set(named) <= known, f"not settings: {set(named) - known}"


def test_the_env_example_values_are_valid_settings(tmp_path: Path) -> None:
    """Every example value, uncommented, is accepted by the settings (a copied line never stops the program)."""
    values = dict(re.findall(r"^# ?([A-Z][A-Z0-9_]+)=(.+)$", (ROOT / ".env.example").read_text(), re.M))
    fields = {name.lower(): value for name, value in values.items() if name not in NOT_SETTINGS}
    youtube = Settings(_env_file=None, **fields)  # type: ignore[call-arg]
    assert youtube.pot_provider_url == "http://pot:4416"
    assert len(youtube.proxy_url) == 2 and youtube.ytdlp_extractor_args == ["youtube:player_client=default,mweb"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed (the YAML checks ran)")
def test_docker_compose_accepts_the_file(tmp_path: Path, compose: dict[str, Any]) -> None:
    """`docker-compose config -q` on a copy with .env made from .env.example, as a user starts."""
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    every_profile = [arg for name in ("telegram", "discord", "flower", "metrics") for arg in ("--profile", name)]
    for profiles in ([], every_profile):
        result = subprocess.run(["docker-compose", *profiles, "config", "-q"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    shown = subprocess.run(["docker-compose", "config", "--services"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    assert set(shown.stdout.split()) == set(compose["services"])
