"""`python -m tasks convert` through the real worker: an album and a chapter split each into a folder of
their own with numbered, tagged tracks; what can't be done is one line on stderr and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from tests.conftest import ROOT
from tests.media import MediaServer, make_chapters

pytestmark = pytest.mark.usefixtures("worker")

CHAPTERS = [("Intro", 3.0), ("Verse / Chorus", 4.0), ("Outro", 3.0)]


def convert(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tasks", "convert", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_an_album_goes_into_its_folder_numbered_and_tagged(media: MediaServer, tmp_path: Path) -> None:
    # 11 entries: more than ALBUM_CONFIRM (10), which the bots ask about first; a terminal asked already.
    done = convert(media.url("/feed", count="11", n=uuid.uuid4().hex), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "A feed"
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert paths == [folder / f"{n:02d} Episode {n}.mp3" for n in range(1, 12)]
    assert sorted(folder.iterdir()) == paths
    for number, path in enumerate(paths, 1):
        tags = ID3(path)
        assert tags["TIT2"].text == [f"Episode {number}"] and tags["TRCK"].text == [f"{number}/11"]
        assert tags["TALB"].text == ["A feed"] and "TXXX:REPLAYGAIN_ALBUM_GAIN" in tags  # the album's, on each
        assert abs(MP3(path).info.length - 8.0) < 0.5


def test_a_missing_track_is_one_line_and_a_failure(media: MediaServer, tmp_path: Path) -> None:
    gone = media.url("/status/404/gone.webm", n=uuid.uuid4().hex)
    done = convert(media.url("/feed", count="4", first=gone, n=uuid.uuid4().hex), "--tracks", "1-2",
                   "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [str(tmp_path / "A feed" / "02 Episode 2.mp3")]  # entries 1-2 only
    [line] = done.stderr.splitlines()
    assert line.startswith(f"1 of 2 tracks written to {tmp_path / 'A feed'}; 1 unavailable, skipped (track 1: ")
    assert "404" in line and "Traceback" not in done.stderr


def test_a_chapter_split_goes_into_the_videos_folder(media: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    make_chapters(media_dir / "cli-chapters.mka", CHAPTERS, title="Chapter Test")
    done = convert(f"{media.media_url('cli-chapters.mka')}?n={uuid.uuid4().hex}", "--split-chapters",
                   "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "Chapter Test"
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert paths == [folder / name for name in ("01 Intro.mp3", "02 Verse Chorus.mp3", "03 Outro.mp3")]
    for number, (path, (title, seconds)) in enumerate(zip(paths, CHAPTERS, strict=True), 1):
        tags = ID3(path)
        assert tags["TIT2"].text == [title] and tags["TRCK"].text == [f"{number}/3"]
        assert tags["TALB"].text == ["Chapter Test"]
        assert abs(MP3(path).info.length - seconds) <= 0.1


def test_bad_options_say_what_is_wrong_and_start_nothing(media: MediaServer, tmp_path: Path) -> None:
    url = media.url("/feed", count="3", n=uuid.uuid4().hex)
    for args, said in ((["--tracks", "5-2"], "--tracks '5-2': write the playlist's entries to take as FIRST-LAST, "
                                             "such as 2-5 (the first entry is 1)."),
                       (["--range", "2:00-1:00"], "That range ends (1:00) before it starts (2:00).")):
        done = convert(url, *args, "--out", str(tmp_path), timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", said + "\n")
    assert not list(tmp_path.iterdir())
