"""`python -m tasks doctor`: the real environment has what YouTube needs; a broken one is told what to fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

from tasks import doctor, housekeeping
from tests.conftest import ROOT, start_worker, stop_process, wait_until
from tests.cookiefiles import SECRET, write_cookies

SECTIONS = ["yt_dlp", "ejs", "js_runtime", "pot_provider", "cookies", "proxy", "routes", "ffmpeg", "redis",
            "workers", "bots", "problems"]


def run_doctor(env: dict[str, str], python: str = sys.executable, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([python, "-m", "tasks", "doctor", "--json", *args], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, **env}, timeout=60)
    return result.returncode, json.loads(result.stdout)


def pinned(package: str) -> str:
    line = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.split("==")[0].split("[")[0] == package)
    return line.split("==")[1]


@pytest.fixture
def python_without_deno(tmp_path: Path) -> tuple[str, str]:
    """An interpreter whose scripts folder has no deno (yt-dlp looks there first) and a PATH without one.

    It is a fresh venv that sees this environment's packages through a .pth file: everything the
    project needs is there except the deno binary, as on a machine where it was never installed.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path("
                                "'purelib'))"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "project.pth").write_text(sysconfig.get_path("purelib") + "\n")
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and not (Path(d) / "deno").exists())
    assert shutil.which("deno", path=path) is None
    assert shutil.which("ffmpeg", path=path)
    return str(venv / "bin" / "python"), path


def test_the_real_environment_has_what_youtube_needs(test_env: dict[str, str], worker: Any) -> None:
    code, report = run_doctor(test_env)
    assert list(report) == SECTIONS
    runtime = report["js_runtime"]
    assert runtime["name"] == "deno" and runtime["version"] == pinned("deno")
    assert Path(runtime["path"]).parent == Path(sysconfig.get_path("scripts"))  # from the requirements
    assert "deno" in runtime["challenge_providers"]
    assert report["ejs"] == {"version": pinned("yt-dlp-ejs"), "expected": pinned("yt-dlp-ejs"), "matches": True}
    assert report["yt_dlp"]["version"] == pinned("yt-dlp")
    assert report["pot_provider"]["plugin"] == f"bgutil:http {pinned('bgutil-ytdlp-pot-provider')}"
    assert report["pot_provider"]["url"] is None and report["proxy"] == [] and report["cookies"] == []
    assert report["ffmpeg"]["version"] and report["ffmpeg"]["ffprobe"]
    assert report["redis"]["ok"] is True
    assert all(report["workers"][queue] >= 1 for queue in ("download", "conversion", "cleanup"))
    # All is well: nothing to fix (but age, which only the calendar changes), exit 0.
    old = report["yt_dlp"]["age_days"] > doctor.OLD_AFTER_DAYS
    assert [p for p in report["problems"] if not p.startswith("yt-dlp ")] == []
    assert len(report["problems"]) == int(old)
    assert code == 0


def test_a_broken_environment_is_told_each_problem_and_its_fix(
    test_env: dict[str, str], python_without_deno: tuple[str, str], closed_port: int, tmp_path: Path,
) -> None:
    python, path = python_without_deno
    expired = write_cookies(tmp_path / "expired.txt", expires=time.time() - 86400)
    missing = tmp_path / "missing.txt"
    env = {**test_env, "PATH": path, "COOKIES_FILE": f"{expired},{missing}",
           "POT_PROVIDER_URL": f"http://127.0.0.1:{closed_port}",
           "PROXY_URL": f"http://user:s3cret-pass@127.0.0.1:{closed_port}",
           "REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"}
    result = subprocess.run([python, "-m", "tasks", "doctor", "--json"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=60)
    assert result.returncode == 1
    assert "s3cret-pass" not in result.stdout + result.stderr and SECRET not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["js_runtime"] is None
    assert report["pot_provider"]["reachable"] is False
    assert report["proxy"] == [{"proxy": f"http://user:***@127.0.0.1:{closed_port}", "reachable": False,
                                "error": "Connection refused"}]
    assert report["redis"]["ok"] is False and report["workers"] is None
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    said = dt.date.fromisoformat(day)  # as Babel writes a date in English
    assert [(c["file"], c["ok"], c["count"], c["youtube_login"], c["earliest_expiry"][:10] if c["ok"] else None)
            for c in report["cookies"]] == [(str(expired), True, 12, False, day), (str(missing), False, 0, False, None)]
    problems = report["problems"]
    assert problems[0].startswith("no JavaScript runtime for yt-dlp")
    assert "pip install -r requirements.txt (it brings deno)" in problems[0]
    assert problems[5].startswith(f"Redis at redis://127.0.0.1:{closed_port}/0 does not answer (")
    assert problems[5].endswith("start it, or correct REDIS_URL")
    assert problems[1:5] == [
        f"PO-token provider http://127.0.0.1:{closed_port} does not answer (Connection refused): "
        "start it (docker-compose up -d pot) or correct POT_PROVIDER_URL",
        f"cookies {expired}: YouTube login cookies expired on {said:%b} {said.day}, {said.year}: refresh them with "
        "/cookies",
        f"cookies {missing}: not found: correct COOKIES_FILE, or send a new file with /cookies",
        f"proxy http://user:***@127.0.0.1:{closed_port} does not answer (Connection refused): "
        "check it, or take it out of PROXY_URL",
    ]
    assert len(problems) == 6


def test_ejs_scripts_that_do_not_match_yt_dlp_are_a_problem(test_env: dict[str, str], worker: Any,
                                                           tmp_path: Path) -> None:
    """An older yt-dlp-ejs ahead on the path: yt-dlp's own check refuses its scripts, and so does the doctor."""
    package = tmp_path / "yt_dlp_ejs"
    (package / "yt" / "solver").mkdir(parents=True)
    (package / "__init__.py").write_text('version = "0.3.1"\n')
    (package / "yt" / "__init__.py").write_text("")
    (package / "yt" / "solver" / "__init__.py").write_text("def core():\n    return '//'\n\n\n"
                                                           "def lib():\n    return '//'\n")
    code, report = run_doctor({**test_env, "PYTHONPATH": str(tmp_path)})
    assert report["ejs"] == {"version": "0.3.1", "expected": pinned("yt-dlp-ejs"), "matches": False}
    assert report["js_runtime"]["name"] == "deno"
    assert [p for p in report["problems"] if not p.startswith("yt-dlp ")] == [
        f"yt-dlp-ejs 0.3.1 does not match yt-dlp {pinned('yt-dlp')} (it expects {pinned('yt-dlp-ejs')}): "
        'pip install -U "yt-dlp[default]" brings the matching one']
    assert code == 1


def test_an_old_yt_dlp_is_advice_with_the_update_command() -> None:
    released = dt.date(*(int(p) for p in pinned("yt-dlp").split(".")))
    assert doctor.ytdlp_version(released + dt.timedelta(days=60)).problems == []
    late = doctor.ytdlp_version(released + dt.timedelta(days=61))
    assert late.data["age_days"] == 61 and not late.blocking
    assert [problem.english() for problem in late.problems] == [
        f"yt-dlp {pinned('yt-dlp')} is 61 days old and YouTube changes often: "
        'pip install -U "yt-dlp[default]" then python -m tasks restart']


def test_the_text_report_names_each_part(test_env: dict[str, str], worker: Any) -> None:
    result = subprocess.run([sys.executable, "-m", "tasks", "doctor"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **test_env}, timeout=60)
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:10]] == ["yt-dlp", "EJS", "JS", "PO", "cookies", "proxy", "routes",
                                                       "ffmpeg", "Redis", "workers"]
    assert lines[2].startswith(f"JS runtime  deno {pinned('deno')} (")
    assert lines[-1] == housekeeping.NO_PROBLEMS or lines[-2].startswith("1 problem")  # what a worker looks for


def test_a_worker_logs_the_summary_once_at_start(test_env: dict[str, str], closed_port: int, tmp_path: Path) -> None:
    """Each worker says at start what it has and lacks; as root, one line instead of Celery's warning."""
    log = tmp_path / "worker.log"
    env = {**test_env, "KEY_PREFIX": test_env["KEY_PREFIX"] + "doctor:",
           "POT_PROVIDER_URL": f"http://127.0.0.1:{closed_port}"}
    proc = start_worker(env, log, name="doctor", queues="cleanup", concurrency=1)
    try:
        wait_until(lambda: "doctor: " in log.read_text(), timeout=60, what="the doctor's summary")
    finally:
        stop_process(proc)
    text = log.read_text()
    assert text.count("doctor: problems found") == 1
    assert f"- PO-token provider http://127.0.0.1:{closed_port} does not answer (Connection refused)" in text
    assert f"JS runtime  deno {pinned('deno')}" in text
    assert "superuser privileges" not in text  # Celery's root warning, a dozen lines
    root_note = "note: this worker runs as root; better a user of its own (the Docker image runs as 'ytmp3')"
    assert (root_note in text) == (os.geteuid() == 0)


def test_no_ffmpeg_on_the_path_is_a_problem(test_env: dict[str, str], worker: Any, tmp_path: Path) -> None:
    """An empty PATH: ffmpeg is gone, deno is still found (yt-dlp looks in the scripts folder first)."""
    code, report = run_doctor({**test_env, "PATH": str(tmp_path)})
    assert report["ffmpeg"] == {"version": None, "ffprobe": None}
    assert report["js_runtime"]["name"] == "deno"
    assert [p for p in report["problems"] if not p.startswith("yt-dlp ")] == [
        "ffmpeg and ffprobe not found on the PATH: install ffmpeg (apt install ffmpeg)"]
    assert code == 1
