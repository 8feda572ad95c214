"""The job pipeline end to end: real Redis, a real prefork worker, real yt-dlp and ffmpeg."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from common import context
from common.errors import TEXT, Code, JobError
from common.jobs import Job, State, new_job_id
from common.settings import get_settings
from tasks import lifecycle, pipeline
from tasks.download import download
from tasks.progress import StageReporter
from tests.conftest import origin, wait_job, wait_until
from tests.media import MediaServer, decoded_duration, make_long, probe_duration

pytestmark = pytest.mark.usefixtures("worker")


def states_and_percents(job_id: str) -> list[tuple[str, float]]:
    """The job's history, as (state, percent) after each event."""
    state, seen = "", []
    for _, change in context.store().history(job_id):
        state = change.get("state", state)
        if "percent" in change:
            seen.append((state, change["percent"]))
    return seen


def assert_no_files(job_id: str, env: dict[str, str]) -> None:
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    assert not (Path(env["STORAGE_DIR"]) / job_id).exists()


def test_happy_path_makes_tagged_mp3_of_source_length(media: MediaServer, media_dir: Path) -> None:
    title = "Déjà <Vu> & \"Friends\" 🎵"
    url = media.register_page(f"song-{uuid.uuid4().hex[:6]}", title=title, uploader="Some Channel")
    job_id, joined = pipeline.submit(url, origin=origin())
    assert not joined
    job = wait_job(job_id)
    assert job.state == State.READY, job.error_text
    assert len(job.files) == 1
    mp3 = MP3(job.files[0])
    assert abs(mp3.info.length - probe_duration(media_dir / "opus.webm")) < 0.5
    assert mp3.info.bitrate == 192_000
    tags = ID3(job.files[0])
    assert tags["TIT2"].text == ["Déjà <Vu> & \"Friends\" 🎵"]
    assert tags["TPE1"].text == ["Some Channel"]
    cover = tags.getall("APIC")[0]
    assert cover.mime == "image/jpeg" and len(cover.data) <= 200_000
    side_cover = Path(job.files[0]).parent / "cover.jpg"
    assert side_cover.stat().st_size <= 200_000
    size = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                           str(side_cover)], capture_output=True, text=True, check=True).stdout.strip()
    assert max(int(n) for n in size.split(",")) <= 320
    assert Path(job.files[0]).name == "Déjà Vu & Friends 🎵.mp3"


def test_direct_file_takes_tags_from_the_file(media: MediaServer, media_dir: Path) -> None:
    job = wait_job(pipeline.submit(media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}", origin=origin())[0])
    assert job.state == State.READY, job.error_text
    tags = ID3(job.files[0])
    assert tags["TIT2"].text == ["Test Tone"] and tags["TPE1"].text == ["Test Artist"]
    assert abs(MP3(job.files[0]).info.length - 7.0) < 0.5


def test_source_without_duration_is_measured(media: MediaServer, media_dir: Path) -> None:
    job = wait_job(pipeline.submit(media.media_url("nodur.webm") + f"?n={uuid.uuid4().hex}", origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert abs(MP3(job.files[0]).info.length - decoded_duration(media_dir / "nodur.webm")) < 0.5
    assert abs(job.duration - 6.0) < 0.5


def test_video_file_gives_its_audio(media: MediaServer) -> None:
    job = wait_job(pipeline.submit(media.media_url("video.mp4") + f"?n={uuid.uuid4().hex}", origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert abs(MP3(job.files[0]).info.length - 5.0) < 0.5


def test_progress_rises_through_both_stages(media: MediaServer, media_dir: Path) -> None:
    make_long(media_dir, minutes=3)
    job_id, _ = pipeline.submit(media.url("/slow/400000/long-3m.webm"), origin=origin())
    job = wait_job(job_id, timeout=120)
    assert job.state == State.READY, job.error_text
    history = states_and_percents(job_id)
    percents = [p for _, p in history]
    assert percents == sorted(percents), history
    downloading = [p for s, p in history if s == "downloading"]
    converting = [p for s, p in history if s == "converting"]
    assert any(10 < p < 50 for p in downloading), history
    assert any(60 < p < 90 for p in converting), history
    assert history[-1] == ("ready", 100.0)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/status/404/opus.webm", Code.NOT_FOUND),
        ("/status/403/opus.webm", Code.REFUSED),
        ("/page/nomedia", Code.UNSUPPORTED),
        ("/media/noaudio.mp4", Code.NO_AUDIO),
        ("/media/garbage.webm", Code.BAD_MEDIA),
    ],
)
def test_permanent_failures_are_named_and_leave_nothing(
    media: MediaServer, test_env: dict[str, str], path: str, code: Code
) -> None:
    url = media.url(path, n=uuid.uuid4().hex)
    job_id, _ = pipeline.submit(url, origin=origin())
    job = wait_job(job_id)
    assert job.state == State.FAILED
    assert job.error_code == code
    assert job.error_text and "Traceback" not in job.error_text
    assert not job.retryable
    assert_no_files(job_id, test_env)
    letters = [json.loads(raw) for raw in context.redis_client().lrange(context.keys().dead, 0, 50)]
    letter = next(item for item in letters if item["job_id"] == job_id)
    assert letter["code"] == code and letter["task"].startswith("tasks.") and letter["time"] > 0


def test_a_page_that_wants_a_sign_in_is_refused_cleanly_without_cookies(media: MediaServer,
                                                                        test_env: dict[str, str]) -> None:
    """The session worker has no COOKIES_FILE (tests/test_routes_worker.py delivers the same with one)."""
    job = wait_job(pipeline.submit(media.url("/private/opus.webm", n=uuid.uuid4().hex), origin=origin())[0])
    assert (job.state, job.error_code) == (State.FAILED, Code.REFUSED)
    assert job.error_text == TEXT[Code.REFUSED]
    assert_no_files(job.id, test_env)


def test_too_long_is_refused_before_converting(media: MediaServer) -> None:
    url = media.register_page(f"long-{uuid.uuid4().hex[:6]}", file="opus.webm", duration=3600)
    job = wait_job(pipeline.submit(url, origin=origin())[0])
    assert job.state == State.FAILED and job.error_code == Code.TOO_LONG
    assert "15:00" in job.error_text
    assert not any(s == "converting" for s, _ in states_and_percents(job.id))


def test_server_errors_are_retried_until_the_file_comes(media: MediaServer) -> None:
    key = uuid.uuid4().hex
    job_id, _ = pipeline.submit(media.url(f"/flaky/2/{key}/opus.webm"), origin=origin())
    job = wait_job(job_id)
    assert job.state == State.READY, job.error_text
    assert media.hits(key) >= 3
    messages = [c.get("message", "") for _, c in context.store().history(job_id)]
    assert any("Trying again (1 of 3)" in m for m in messages)
    assert any("Trying again (2 of 3)" in m for m in messages)


def test_server_errors_past_the_retries_fail_as_retryable(media: MediaServer, test_env: dict[str, str]) -> None:
    key = uuid.uuid4().hex
    job = wait_job(pipeline.submit(media.url(f"/flaky/10/{key}/opus.webm"), origin=origin())[0])
    assert job.state == State.FAILED and job.error_code == Code.SERVER
    assert job.retryable and "4 tries" in job.error_text
    assert media.hits(key) == 4
    assert_no_files(job.id, test_env)


def test_identical_requests_share_one_job(media: MediaServer) -> None:
    url = media.url("/slow/200000/opus.webm", n=uuid.uuid4().hex)
    first, joined_first = pipeline.submit(url, origin=origin())
    second, joined_second = pipeline.submit(url, origin=origin())
    other, joined_other = pipeline.submit(url, bitrate=128, origin=origin())
    assert (joined_first, joined_second, joined_other) == (False, True, False)
    assert first == second != other
    assert len(context.store().origins(first)) == 2
    assert wait_job(first).state == State.READY
    assert wait_job(other).state == State.READY


def test_cancel_during_conversion_stops_ffmpeg_and_removes_files(
    media: MediaServer, media_dir: Path, test_env: dict[str, str]
) -> None:
    make_long(media_dir, minutes=10)
    job_id, _ = pipeline.submit(media.media_url("long.webm") + f"?n={uuid.uuid4().hex}", origin=origin())
    store = context.store()
    wait_until(lambda: (j := store.get(job_id)) and j.state == State.CONVERTING and j.percent > 61,
               timeout=60, what=lambda: f"conversion under way: {store.get(job_id)}")
    assert ffmpeg_running(job_id)
    assert pipeline.cancel(job_id)
    wait_until(lambda: not ffmpeg_running(job_id), timeout=10, what="ffmpeg gone")
    wait_until(lambda: not (Path(test_env["TEMP_DIR"]) / job_id).exists(), timeout=10, what="temp gone")
    job = store.get(job_id)
    assert job.state == State.CANCELLED
    assert_no_files(job_id, test_env)
    assert not pipeline.cancel(job_id)  # a second cancel is a no-op


def ffmpeg_running(job_id: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"ffmpeg.*{job_id}"], capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_lower_bitrate_fits_a_small_limit(media: MediaServer) -> None:
    url = media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}"
    job = wait_job(pipeline.submit(url, limit_bytes=150_000, origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert len(job.files) == 1
    mp3 = MP3(job.files[0])
    assert mp3.info.bitrate == 128_000
    assert Path(job.files[0]).stat().st_size <= 150_000


def test_split_into_tagged_parts_when_no_bitrate_fits(media: MediaServer, media_dir: Path) -> None:
    url = media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}"
    limit = 50_000
    job = wait_job(pipeline.submit(url, limit_bytes=limit, origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert len(job.files) >= 4
    total = 0.0
    for number, file in enumerate(job.files, 1):
        assert Path(file).stat().st_size <= limit
        mp3 = MP3(file)
        total += mp3.info.length
        assert ID3(file)["TIT2"].text == [f"Test Tone ({number} of {len(job.files)})"]
        assert Path(file).name == f"Test Tone ({number} of {len(job.files)}).mp3"
    assert abs(total - probe_duration(media_dir / "opus.webm")) < 0.5


def test_cli_convert_prints_the_mp3_path(media: MediaServer, test_env: dict[str, str], tmp_path: Path) -> None:
    url = media.media_url("opus.webm") + f"?n={uuid.uuid4().hex}"
    storage = Path(test_env["STORAGE_DIR"])
    before = set(storage.iterdir()) if storage.exists() else set()
    result = subprocess.run(["python", "-m", "tasks", "convert", url, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path and path.suffix == ".mp3"
    assert abs(MP3(path).info.length - 8.0) < 0.5
    assert set(storage.iterdir()) <= before  # delivered: the job's output is gone


def test_cli_convert_reports_a_failure_in_words(media: MediaServer, tmp_path: Path) -> None:
    url = media.url("/status/404/opus.webm", n=uuid.uuid4().hex)
    result = subprocess.run(["python", "-m", "tasks", "convert", url, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "404" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


PLAYLIST_PAGE = ('<html><head><title>My list</title></head><body>'
                 '<video src="opus.webm"></video><video src="audio.m4a"></video></body></html>')


def download_playlist(media: MediaServer, media_dir: Path, playlist: str) -> dict[str, Any]:
    """The download stage run here with PLAYLIST set so, on a page of two videos: what it learnt."""
    (media_dir / "list.html").write_text(PLAYLIST_PAGE)
    store = context.store()
    job = Job(id=new_job_id(), url=media.media_url("list.html") + f"?n={uuid.uuid4().hex}")
    store.create(job, origin())
    settings = get_settings().model_copy(update={"playlist": playlist})
    reporter = StageReporter(store, job.id, State.DOWNLOADING, 0.1, settings.heartbeat_timeout)
    reporter.start()
    try:
        return download(store.get(job.id), settings, lifecycle.workdir(job.id, reporter.token), reporter)
    finally:
        reporter.close()
        lifecycle.remove_files(job.id)


def test_playlist_setting_refuse_refuses_it(media: MediaServer, media_dir: Path) -> None:
    with pytest.raises(JobError) as refused:
        download_playlist(media, media_dir, "refuse")
    assert refused.value.code == Code.PLAYLIST and "send a link to one video" in refused.value.text


def test_playlist_setting_first_takes_the_first_item(media: MediaServer, media_dir: Path) -> None:
    info = download_playlist(media, media_dir, "first")
    assert info["url"].endswith("/opus.webm")
