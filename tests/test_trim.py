"""Ranges ("1:30-4:05") through the real worker: the MP3 holds exactly the range, is titled with it,
is fitted by its length, and a range that isn't in the media fails clearly, leaving nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from common import context
from common.clip import parse_range
from common.errors import Code
from common.jobs import Job, State, new_job_id
from common.settings import get_settings
from tasks import lifecycle, pipeline
from tasks.convert import convert
from tasks.fit import plan
from tasks.progress import StageReporter
from tests.conftest import ROOT, deliver, origin, wait_job
from tests.media import MediaServer, make_long, probe_duration

pytestmark = pytest.mark.usefixtures("worker")

TOLERANCE = 0.1  # seconds: what the issue allows between the range asked for and the MP3's length


@pytest.fixture(scope="module")
def tone(media_dir: Path) -> Path:
    """A three-minute chord ("Long Tone")."""
    return make_long(media_dir, minutes=3)


def page(media: MediaServer, file: str = "long-3m.webm") -> str:
    return media.register_page(f"range-{uuid.uuid4().hex[:8]}", file=file, title="Long Tone", duration=180)


def clip(text: str) -> str:
    return parse_range(text).key


def assert_no_files(job_id: str, env: dict[str, str]) -> None:
    assert not (Path(env["TEMP_DIR"]) / job_id).exists()
    assert not (Path(env["STORAGE_DIR"]) / job_id).exists()


@pytest.mark.parametrize(
    ("asked", "seconds", "shown"),
    [
        ("1:30-2:35", 65.0, "1:30–2:35"),
        ("90-155.5", 65.5, "1:30–2:35.5"),
        ("-0:20", 20.0, "0:00–0:20"),
        ("2:30-", 30.0, "2:30–3:00"),
        ("2:30-9:00", 30.0, "2:30–3:00"),  # an end past the end is the end; the title says where it really is
    ],
)
def test_the_mp3_holds_exactly_the_range_and_is_titled_with_it(
    media: MediaServer, tone: Path, asked: str, seconds: float, shown: str
) -> None:
    job = wait_job(pipeline.submit(page(media), clip=clip(asked), origin=origin())[0])
    assert job.state == State.READY, job.error_text
    [mp3] = job.files
    assert abs(probe_duration(Path(mp3)) - seconds) <= TOLERANCE
    assert job.title == f"Long Tone ({shown})"
    assert ID3(mp3)["TIT2"].text == [f"Long Tone ({shown})"]
    assert Path(mp3).name == f"Long Tone ({shown.replace(':', '.')}).mp3"
    assert abs(job.duration - seconds) <= TOLERANCE
    deliver(job.id)


def test_a_direct_file_is_cut_too(media: MediaServer) -> None:
    url = media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}"
    job = wait_job(pipeline.submit(url, clip=clip("0:02-0:05.5"), origin=origin())[0])
    assert job.state == State.READY, job.error_text
    assert abs(probe_duration(Path(job.files[0])) - 3.5) <= TOLERANCE
    assert ID3(job.files[0])["TIT2"].text == ["Test Tone (0:02–0:05.5)"]
    deliver(job.id)


def test_a_start_past_the_end_fails_before_the_download(media: MediaServer, tone: Path, media_dir: Path,
                                                        test_env: dict[str, str]) -> None:
    name = f"range-{uuid.uuid4().hex[:8]}.webm"
    shutil.copy(tone, media_dir / name)
    job = wait_job(pipeline.submit(page(media, name), clip=clip("4:00-5:00"), origin=origin())[0])
    assert job.state == State.FAILED and job.error_code == Code.BAD_RANGE
    assert job.error_text == "The range you asked for isn't in this video. It starts at 4:00; the video is 3:00 long."
    assert not job.retryable
    assert not media.requests_for(f"/media/{name}")  # the page said how long it is: nothing was downloaded
    assert_no_files(job.id, test_env)


def test_a_start_past_the_end_of_a_bare_file_fails_after_it(media: MediaServer, test_env: dict[str, str]) -> None:
    url = media.media_url("audio.m4a") + f"?n={uuid.uuid4().hex}"  # no length known before the download
    job = wait_job(pipeline.submit(url, clip=clip("0:09-"), origin=origin())[0])
    assert job.state == State.FAILED and job.error_code == Code.BAD_RANGE
    assert job.error_text.endswith("It starts at 0:09; the video is 0:07 long.")
    assert_no_files(job.id, test_env)


def test_requests_share_a_job_only_with_the_same_range(media: MediaServer, tone: Path) -> None:
    url = media.url("/slow/100000/long-3m.webm", n=uuid.uuid4().hex)
    first, _ = pipeline.submit(url, clip=clip("0:10-0:20"), origin=origin())
    same, joined = pipeline.submit(url, clip=clip("10-20"), origin=origin())
    other, joined_other = pipeline.submit(url, clip=clip("0:10-0:21"), origin=origin())
    whole, joined_whole = pipeline.submit(url, origin=origin())
    assert (same, joined) == (first, True)
    assert not joined_other and not joined_whole and len({first, other, whole}) == 3
    for job_id in (first, other, whole):
        pipeline.cancel(job_id)


def test_fit_and_parts_go_by_the_range(media: MediaServer, tone: Path) -> None:
    limit = 600_000
    # 30 s fit at 128 kbit/s where the whole three minutes would not fit at any bitrate
    fitted = wait_job(pipeline.submit(page(media), limit_bytes=limit, clip=clip("0-30"), origin=origin())[0])
    assert fitted.state == State.READY, fitted.error_text
    assert fitted.bitrate == 128 and len(fitted.files) == 1
    assert plan(180, 192, 64, limit).parts > 1
    # 100 s need parts: as many as 100 s need, together 100 s long
    parted = wait_job(pipeline.submit(page(media), limit_bytes=limit, clip=clip("1:00-2:40"), origin=origin())[0])
    assert parted.state == State.READY, parted.error_text
    assert len(parted.files) == plan(100, 192, 64, limit).parts
    assert all(Path(f).stat().st_size <= limit for f in parted.files)
    assert abs(sum(probe_duration(Path(f)) for f in parted.files) - 100) < 0.5
    assert Path(parted.files[0]).name == f"Long Tone (1.00–2.40) (1 of {len(parted.files)}).mp3"
    deliver(fitted.id)
    deliver(parted.id)


class Recording(StageReporter):
    """The real reporter, remembering each fraction of the stage it was given."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.seen: list[tuple[float, float | None]] = []

    def progress(self, fraction: float, speed: float | None = None, eta: float | None = None, **fields: object) -> None:
        self.seen.append((fraction, speed))
        super().progress(fraction, speed, eta, **fields)


def test_progress_counts_the_range_not_the_source(tone: Path) -> None:
    store, settings = context.store(), get_settings()
    job = Job(id=new_job_id(), url="https://example.com/v", title="Long Tone", clip=clip("2:00-2:30"))
    store.create(job, origin())
    reporter = Recording(store, job.id, State.CONVERTING, 0.1, settings.heartbeat_timeout)
    workdir, outdir = lifecycle.workdir(job.id, reporter.token), lifecycle.outdir(job.id, reporter.token)
    workdir.mkdir(parents=True)
    shutil.copy(tone, workdir / "source.webm")
    reporter.start()
    try:
        [mp3] = convert(store.get(job.id), settings, workdir, workdir, outdir, reporter)
        assert abs(probe_duration(mp3) - 30) <= TOLERANCE
    finally:
        reporter.close()
        lifecycle.remove_files(job.id)
    from_ffmpeg = [fraction for fraction, speed in reporter.seen if speed is not None]
    assert from_ffmpeg and from_ffmpeg == sorted(from_ffmpeg)
    assert from_ffmpeg[-1] > 0.95  # the end of 30 s is the end, not 30 s of three minutes (0.17)


def test_cli_convert_takes_a_range(media: MediaServer, tone: Path, test_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tasks", "convert", page(media), "--range", "0:10-0:20",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mp3 = Path(done.stdout.strip().splitlines()[-1])
    assert mp3 == tmp_path / "Long Tone (0.10–0.20).mp3"
    assert abs(probe_duration(mp3) - 10) <= TOLERANCE


def test_cli_convert_explains_a_bad_range(media: MediaServer, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tasks", "convert", page(media), "--range", "1:70-2:00",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("In “1:70”, 70 seconds is more than 59. Times look like 1:30, 1:02:03 or 90 "
                                   "(seconds).")
    assert not list(tmp_path.iterdir())
