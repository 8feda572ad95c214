"""Loudness and ReplayGain through the real worker (and the Telegram bot with LOUDNESS set): a quiet and a
loud source come out at the target, measured on the delivered MP3 with ffmpeg's ebur128; every MP3
carries ReplayGain tags that match its own measured loudness; "normalising" is its own part of the
conversion's percent range."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from common import context, i18n
from common.jobs import Job, State
from common.render import HtmlMarkup, render
from tasks import loudness, pipeline
from tests.conftest import ROOT, BotProcess, deliver, origin, wait_job
from tests.fake_telegram import FakeTelegram
from tests.media import MediaServer, make_chapters
from tests.test_telegram import TOKEN, new_chat, wait_audios
from tests.test_telegram import started as telegram_started

pytestmark = pytest.mark.usefixtures("worker")

TARGET = -14.0


def make_level(path: Path, decibels: float, seconds: float = 40) -> Path:
    """A chord (two sines, one a little louder each second) at this many dB from ffmpeg's default level."""
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:duration={seconds}",
             "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}:beep_factor=2",
             "-filter_complex", f"[0:a][1:a]amix=inputs=2:normalize=0,volume={decibels}dB[a]", "-map", "[a]",
             "-c:a", "libopus", "-b:a", "96k", "-metadata", "title=Level", "-f", "webm", str(path)],
            check=True)
    return path


def ebur128(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file, as ffmpeg's ebur128 measures it."""
    log = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af",
                          "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    summary = log[log.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)
    assert integrated and peak, summary
    return float(integrated.group(1)), float(peak.group(1))


def replaygain(path: Path) -> tuple[float, float]:
    tags = ID3(path)
    gain = tags["TXXX:REPLAYGAIN_TRACK_GAIN"].text[0]
    assert re.fullmatch(r"[+-]\d+\.\d\d dB", gain), gain
    return float(gain.removesuffix(" dB")), float(tags["TXXX:REPLAYGAIN_TRACK_PEAK"].text[0])


def assert_replaygain_matches(path: Path) -> None:
    """The tags say what the MP3 itself measures: gain to -18 LUFS, a peak near its true peak."""
    integrated, true_peak = ebur128(path)
    gain, peak = replaygain(path)
    assert abs(gain - (-18 - integrated)) <= 0.5, (gain, integrated)
    assert peak > 0 and abs(20 * math.log10(peak) - true_peak) <= 1.0, (peak, true_peak)


@pytest.fixture(scope="module")
def levels(media_dir: Path) -> dict[str, Path]:
    return {"quiet": make_level(media_dir / "quiet.webm", -20), "loud": make_level(media_dir / "loud.webm", 10)}


@pytest.mark.parametrize("level", ["quiet", "loud"])
def test_a_quiet_and_a_loud_source_come_out_at_the_target(media: MediaServer, levels: dict[str, Path],
                                                          level: str) -> None:
    before, _ = ebur128(levels[level])
    assert abs(before - TARGET) > 5  # far from the target to begin with
    url = media.media_url(levels[level].name) + f"?n={uuid.uuid4().hex}"
    job = wait_job(pipeline.submit(url, loudness=TARGET, origin=origin())[0])
    assert job.state == State.READY, job.error_text
    mp3 = Path(job.files[0])
    integrated, true_peak = ebur128(mp3)
    assert abs(integrated - TARGET) <= 1.0, integrated
    assert true_peak <= -1.0, true_peak
    assert_replaygain_matches(mp3)
    assert job.replaygain == list(replaygain(mp3))  # kept in the job too: an album's gain is made of its tracks'
    deliver(job.id)


def test_normalising_is_its_own_part_of_the_conversion(media: MediaServer, levels: dict[str, Path]) -> None:
    url = media.media_url(levels["quiet"].name) + f"?n={uuid.uuid4().hex}"
    job = wait_job(pipeline.submit(url, loudness=TARGET, origin=origin())[0])
    assert job.state == State.READY, job.error_text
    state, step, seen = "", "", []
    for _, change in context.store().history(job.id):
        state, step = change.get("state", state), change.get("step", step)
        if "percent" in change:
            seen.append((state, step, change["percent"]))
    normalising = [i for i, (s, st, _) in enumerate(seen) if s == "converting" and st == "normalising"]
    encoding = [p for s, st, p in seen[normalising[-1] + 1:] if s == "converting"] if normalising else []
    assert normalising and seen[normalising[0]][2] == 60.0 and seen[normalising[-1]][2] <= 69.0, seen
    assert encoding and min(encoding) >= 69.0 and max(encoding) == 90.0, seen
    percents = [p for _, _, p in seen]
    assert percents == sorted(percents), seen
    deliver(job.id)


def test_an_albums_gain_weighs_its_tracks_energy_by_duration() -> None:
    loud, quiet = loudness.ReplayGain(-4.0, 0.9), loudness.ReplayGain(6.0, 0.3)  # quiet: 10 dB below loud
    assert loudness.album([(loud, 60), (loud, 30)]) == loud
    # Equal lengths: the mean energy is (1 + 0.1) / 2 of the loud one's, 2.60 dB less loud.
    assert loudness.album([(loud, 60), (quiet, 60)]) == loudness.ReplayGain(-1.4, 0.9)
    assert loudness.album([(loud, 1), (quiet, 99)]) == loudness.ReplayGain(5.63, 0.9)  # the long one counts
    assert loudness.album([(loud, 0)]) is None and loudness.album([]) is None


def test_the_status_names_the_step() -> None:
    job = Job(id="a" * 12, url="https://example.com/v", title="Song", state=State.CONVERTING, percent=64,
              step="normalising")
    assert "🎚 Normalising" in render(job, HtmlMarkup(), i18n.get("en")).text
    assert "🎛 Converting" in render(replace(job, step="", percent=75), HtmlMarkup(), i18n.get("en")).text


def test_every_mp3_carries_replaygain_without_normalising(media: MediaServer, levels: dict[str, Path]) -> None:
    for name in ("opus.webm", "audio.m4a", levels["loud"].name):
        job = wait_job(pipeline.submit(media.media_url(name) + f"?n={uuid.uuid4().hex}", origin=origin())[0])
        assert job.state == State.READY, job.error_text
        assert_replaygain_matches(Path(job.files[0]))
        deliver(job.id)


def test_parts_and_chapters_carry_replaygain(media: MediaServer, media_dir: Path, levels: dict[str, Path]) -> None:
    url = media.media_url(levels["loud"].name) + f"?n={uuid.uuid4().hex}"
    parted = wait_job(pipeline.submit(url, limit_bytes=150_000, origin=origin())[0])
    assert parted.state == State.READY and len(parted.files) > 1, parted.error_text
    gains = {replaygain(Path(f)) for f in parted.files}
    assert len(gains) == 1  # pieces of one track share its gain
    source = make_chapters(media_dir / "rg-chapters.mkv", [("One", 6), ("Two", 9)], title="Chaptered")
    split = wait_job(pipeline.submit(media.media_url(source.name) + f"?n={uuid.uuid4().hex}", split=True,
                                     origin=origin())[0])
    assert split.state == State.READY and len(split.files) == 2, split.error_text
    for track in split.files:
        assert_replaygain_matches(Path(track))
        assert "TXXX:REPLAYGAIN_ALBUM_GAIN" in ID3(track)
    deliver(parted.id)
    deliver(split.id)


def test_the_loudness_is_part_of_the_request(media: MediaServer, levels: dict[str, Path]) -> None:
    url = media.url(f"/slow/20000/{levels['quiet'].name}", n=uuid.uuid4().hex)
    first, _ = pipeline.submit(url, loudness=TARGET, origin=origin())
    same, joined = pipeline.submit(url, loudness=TARGET, origin=origin())
    other, joined_other = pipeline.submit(url, loudness=-16, origin=origin())
    plain, joined_plain = pipeline.submit(url, origin=origin())
    assert (same, joined) == (first, True)
    assert not joined_other and not joined_plain and len({first, other, plain}) == 3
    for job_id in (first, other, plain):
        pipeline.cancel(job_id)


@pytest.fixture(scope="module")
def loud_bot(test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTelegram]:
    """The Telegram bot of a deployment with LOUDNESS=-14 (the session's worker serves its jobs)."""
    with FakeTelegram(flood_limit=3, retry_after=1) as fake:
        env = {**test_env, "TELEGRAM_TOKEN": TOKEN, "TELEGRAM_API_URL": fake.api_url,
               "TELEGRAM_FILE_URL": fake.file_url, "LOUDNESS": "-14"}
        process = BotProcess("telegram", env, tmp_path_factory.mktemp("loud-telegram") / "bot.log")
        process.start(telegram_started(fake))
        yield fake
        process.stop()


def test_a_bot_with_loudness_set_delivers_at_the_target(loud_bot: FakeTelegram, media: MediaServer,
                                                        levels: dict[str, Path], tmp_path: Path) -> None:
    chat = new_chat()
    loud_bot.push_message(chat, 7, media.media_url(levels["quiet"].name) + f"?n={uuid.uuid4().hex}")
    [audio] = wait_audios(loud_bot, chat)
    mp3 = tmp_path / "delivered.mp3"
    mp3.write_bytes(io.BytesIO(audio["data"]).getvalue())
    integrated, true_peak = ebur128(mp3)
    assert abs(integrated - TARGET) <= 1.0 and true_peak <= -1.0, (integrated, true_peak)
    assert_replaygain_matches(mp3)


def test_cli_convert_takes_a_loudness(media: MediaServer, levels: dict[str, Path], tmp_path: Path) -> None:
    url = media.media_url(levels["loud"].name) + f"?n={uuid.uuid4().hex}"
    done = subprocess.run([sys.executable, "-m", "tasks", "convert", url, "--loudness", "-16", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    integrated, _ = ebur128(Path(done.stdout.strip().splitlines()[-1]))
    assert abs(integrated - -16) <= 1.0
    refused = subprocess.run([sys.executable, "-m", "tasks", "convert", url, "--loudness", "loud", "--out",
                              str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "--loudness must be off or a LUFS target from -40 to -5, such as -14"
