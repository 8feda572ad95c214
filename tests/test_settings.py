"""Settings: TOML defaults, environment overrides, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def run_cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return subprocess.run([sys.executable, "-m", "tasks", "convert", "http://example.invalid/x"],
                          env={**clean, "PYTHONPATH": str(ROOT), **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    toml = tmp_path / "s.toml"
    toml.write_text('mp3_bitrate = 128\nnetwork_allowlist = ["media.local:8080"]\ntelegram_admin_ids = [5]\n')
    monkeypatch.setenv("SETTINGS_FILE", str(toml))
    monkeypatch.setenv("TELEGRAM_ADMIN_IDS", "1, 2,3")
    settings = Settings()
    assert settings.mp3_bitrate == 128
    assert settings.network_allowlist == ["media.local:8080"]
    assert settings.telegram_admin_ids == [1, 2, 3]
    monkeypatch.setenv("MP3_BITRATE", "320")
    assert Settings().mp3_bitrate == 320


def test_repository_settings_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MP3_BITRATE", raising=False)
    monkeypatch.setenv("SETTINGS_FILE", str(ROOT / "settings.toml"))
    assert Settings().mp3_bitrate == 192


@pytest.mark.parametrize(
    ("env", "toml", "expected"),
    [
        ({"REDIS_URL": "http://localhost"}, "", "redis_url"),
        ({"DOWNLOAD_CONCURRENCY": "-1"}, "", "download_concurrency"),
        ({"MP3_BITRATE": "loud"}, "", "mp3_bitrate"),
        ({}, "no_such_key = 1\n", "no_such_key: unknown key"),
        ({"NETWORK_ALLOWLIST": "media.local:99999"}, "", "network_allowlist"),
        ({}, "mp3_bitrate = [\n", "invalid settings file"),
    ],
)
def test_bad_settings_stop_with_one_line(tmp_path: Path, env: dict[str, str], toml: str, expected: str) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(toml)
    result = run_cli({"SETTINGS_FILE": str(settings_file), **env}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr


def test_missing_settings_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    result = run_cli({"SETTINGS_FILE": str(tmp_path / "nope.toml")}, tmp_path)
    assert result.returncode == 2 and "nope.toml" in result.stderr
