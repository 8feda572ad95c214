"""The layout's promises: common depends on nothing of ours, the chat processes never load yt-dlp."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_common_imports_neither_bots_nor_tasks() -> None:
    for path in (ROOT / "common").glob("*.py"):
        assert not imported_packages(path) & {"bots", "tasks", "yt_dlp", "telegram", "discord"}, path


def test_platform_code_stays_in_its_adapter() -> None:
    for path in (ROOT / "bots").glob("*.py"):
        used = imported_packages(path)
        if "telegram" in used:
            assert path.name.startswith("telegram_"), path
        if "discord" in used:
            assert path.name.startswith("discord_"), path


def test_bots_never_load_yt_dlp(test_env: dict[str, str]) -> None:
    code = (
        "import sys, bots.core, bots.telegram_bot, bots.discord_bot, bots.admin\n"
        "from tasks import pipeline\n"
        "pipeline.submit('http://127.0.0.1:9/video', origin={'id': 'layout', 'platform': 'test'})\n"
        "print(sorted(m for m in ('yt_dlp', 'tasks.stages', 'tasks.download') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_only_a_download_loads_yt_dlp_and_the_launcher_no_redis_client() -> None:
    """What a conversion or cleanup worker loads (the app with its task modules) leaves yt-dlp out: tens of MB
    in each worker (README: Benchmark, footprint); the launcher of `python -m bots up` needs neither."""
    code = (
        "import sys, bots.up\n"
        "print(sorted(m for m in ('redis', 'celery', 'yt_dlp') if m in sys.modules))\n"
        "from tasks.celery_app import app\n"
        "import tasks.cli, tasks.losses\n"
        "app.loader.import_default_modules()\n"
        "print(sorted(m for m in ('yt_dlp', 'tasks.download', 'tasks.doctor') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "[]"]
