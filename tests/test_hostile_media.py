"""Media files made to attack ffmpeg, sent as an attacker would: through the real worker.

A "song.mp3" whose bytes are a playlist or an indirection file (HLS, DASH, ffconcat, an image
sequence) names files on the worker's own disk; ffmpeg would open and convert them, and the user
would receive a file from the worker's machine. A thumbnail of 16000×16000 pixels is a few KB on
the wire and a gigabyte decoded. A file of tiny packets makes ffprobe print many times its size.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from common.errors import Code, JobError
from common.jobs import State
from tasks import ffmpeg, images, lifecycle
from tests.conftest import ROOT, wait_until
from tests.media import FFMPEG, MediaServer, make_pixel_bomb, make_tiny_frames
from tests.test_bad_media import assert_failed, assert_nothing_left, submit

pytestmark = pytest.mark.usefixtures("worker")

_FF = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


@pytest.fixture(scope="module")
def worker_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files on the worker's own disk, outside anything served: what the attacker wants to receive."""
    folder = tmp_path_factory.mktemp("worker-disk")
    for name, codec in (("secret.mp3", "libmp3lame"), ("secret.webm", "libopus")):
        subprocess.run([*_FF, "-f", "lavfi", "-i", "sine=frequency=1000:duration=5", "-c:a", codec,
                        str(folder / name)], check=True, timeout=60)
    for number in (1, 2, 3):
        subprocess.run([*_FF, "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v", "1",
                        str(folder / f"frame{number:03d}.png")], check=True, timeout=60)
    return folder


def _hls(disk: Path) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nfile://{disk}/secret.mp3\n#EXT-X-ENDLIST\n"


def _dash(disk: Path) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" '
            'type="static" mediaPresentationDuration="PT5S" minBufferTime="PT1S"><Period>'
            '<AdaptationSet mimeType="audio/webm"><Representation id="a" bandwidth="64000">'
            f'<BaseURL>file://{disk}/secret.webm</BaseURL></Representation></AdaptationSet></Period></MPD>\n')


def _ffconcat(disk: Path) -> str:
    return f"ffconcat version 1.0\nfile '{disk}/secret.mp3'\nfile 'secret.mp3'\n"


def _image_sequence(disk: Path) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nfile://{disk}/frame%03d.png\n#EXT-X-ENDLIST\n"


def _subtitles(disk: Path) -> str:
    return "1\n00:00:00,000 --> 00:00:05,000\nNot a song at all\n"


INDIRECTIONS: dict[str, Callable[[Path], str]] = {
    "hls": _hls, "dash": _dash, "ffconcat": _ffconcat, "image-sequence": _image_sequence, "subtitles": _subtitles,
}


@pytest.mark.parametrize("kind", list(INDIRECTIONS))
def test_a_song_that_is_really_a_playlist_is_refused(
    media: MediaServer, media_dir: Path, worker_disk: Path, test_env: dict[str, str], kind: str
) -> None:
    name = f"hostile-{kind}.mp3"  # served as audio/mpeg: yt-dlp takes it for a direct MP3
    (media_dir / name).write_text(INDIRECTIONS[kind](worker_disk))
    job = submit(media.media_url(name) + f"?n={uuid.uuid4().hex}")
    assert_failed(job, Code.BAD_MEDIA)
    assert job.files == [] and not job.title.startswith("secret")
    assert [r for r in media.requests_for(f"/media/{name}") if r.status == 200]  # it was fetched, then refused
    assert_nothing_left(job.id, test_env)  # nothing in storage: no file from the worker's disk


def test_an_image_sent_as_a_song_is_bad_media(media: MediaServer, test_env: dict[str, str]) -> None:
    """JPEG bytes with an audio type: not a video without sound, just not media."""
    job = submit(media.url("/media/cover.jpg", type="audio/mpeg", n=uuid.uuid4().hex))
    assert_failed(job, Code.BAD_MEDIA)
    assert_nothing_left(job.id, test_env)


def test_a_pixel_bomb_thumbnail_costs_only_the_cover(media: MediaServer, media_dir: Path,
                                                     test_env: dict[str, str]) -> None:
    bomb = make_pixel_bomb(media_dir)
    assert bomb.stat().st_size < 64 * 1024  # small on the wire
    job = submit(media.register_page(f"bomb-{uuid.uuid4().hex[:8]}", thumb=bomb.name))
    assert job.state == State.READY, job.error_text
    mp3 = Path(job.files[0])
    assert ID3(mp3).getall("APIC") == []  # the MP3 came, without a cover
    assert not (mp3.parent / "cover.jpg").exists()
    assert [r for r in media.requests_for(f"/media/{bomb.name}") if r.status == 200]  # fetched, refused undecoded
    lifecycle.remove_files(job.id)


def test_image_headers_state_their_size(media_dir: Path) -> None:
    """The pixel count is read from the header: PNG, baseline and progressive JPEG, the three WebP kinds."""
    png = (media_dir / make_pixel_bomb(media_dir).name).read_bytes()
    assert images.size(png) == (16000, 16000) and images.too_large(png)
    jpeg = (media_dir / "cover.jpg").read_bytes()
    assert images.size(jpeg) == (640, 360) and not images.too_large(jpeg)
    # A progressive JPEG (SOF2) behind an EXIF segment that holds a small thumbnail's own SOF0
    exif = b"Exif\x00\x00" + b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10" + bytes(8)
    progressive = (b"\xff\xd8\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
                   + b"\xff\xc2\x00\x11\x08" + (9000).to_bytes(2, "big") + (7000).to_bytes(2, "big") + bytes(10))
    assert images.size(progressive) == (7000, 9000) and images.too_large(progressive)
    riff = b"RIFF\x00\x00\x00\x00WEBP"
    lossy = riff + b"VP8 " + bytes(4) + b"\x00\x00\x00\x9d\x01\x2a" + (300).to_bytes(2, "little") + (200).to_bytes(
        2, "little")
    assert images.size(lossy) == (300, 200)
    packed = (5999 | (3999 << 14)).to_bytes(4, "little")
    assert images.size(riff + b"VP8L" + bytes(4) + b"\x2f" + packed + bytes(8)) == (6000, 4000)
    extended = riff + b"VP8X" + bytes(8) + (15999).to_bytes(3, "little") + (15999).to_bytes(3, "little")
    assert images.size(extended) == (16000, 16000) and images.too_large(extended)
    cut = (png[:20], b"\xff\xd8\xff\xe0\x00", jpeg[:20], riff + b"VP8X" + bytes(9))
    for unreadable in (*cut, b"GIF89a"):
        assert images.too_large(unreadable)  # a header we cannot read is never decoded


def test_ffmpeg_decodes_no_image_over_the_pixel_limit(media_dir: Path, tmp_path: Path) -> None:
    """The second line of defence, should a header lie: ffmpeg's own -max_pixels."""
    cover = media_dir / "cover.jpg"
    assert ffmpeg.make_cover(cover, tmp_path / "small.jpg", max_pixels=640 * 360) == tmp_path / "small.jpg"
    assert ffmpeg.make_cover(cover, tmp_path / "refused.jpg", max_pixels=640 * 360 - 1) is None
    assert not (tmp_path / "refused.jpg").exists()


def test_probe_output_is_capped(tmp_path: Path) -> None:
    """A file stuffed with a tag of megabytes: ffprobe's answer is not taken in whole."""
    meta = tmp_path / "meta.txt"
    meta.write_text(";FFMETADATA1\ntitle=" + "x" * (2 * ffmpeg.PROBE_OUTPUT_MAX) + "\n")
    stuffed = tmp_path / "stuffed.mka"
    subprocess.run([*_FF, "-f", "lavfi", "-i", "sine=duration=1", "-i", str(meta), "-map_metadata", "1",
                    "-c:a", "libopus", str(stuffed)], check=True, timeout=60)
    with pytest.raises(JobError) as caught:
        ffmpeg.probe(stuffed)
    assert caught.value.code == Code.BAD_MEDIA and "limit" in caught.value.detail


_MEASURE = """
import re, sys
from pathlib import Path
from tasks import ffmpeg

def peak() -> int:
    return int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))

before = peak()
seconds = ffmpeg.measure_duration(Path(sys.argv[1]))
print(seconds, peak() - before)
"""


def test_measuring_a_file_of_tiny_frames_does_not_balloon(media_dir: Path) -> None:
    """One ffprobe line per packet, read one at a time: the worker's peak memory stays where it was."""
    tiny = make_tiny_frames(media_dir)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(tiny)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=True)
    seconds, grew_kb = done.stdout.split()
    print(f"\nmeasure_duration on {tiny.stat().st_size / 2**20:.1f} MB of one-sample packets: "
          f"{float(seconds):.1f} s of audio, peak RSS of the measuring process grew {int(grew_kb) / 1024:.1f} MB")
    assert abs(float(seconds) - 120) < 0.5
    assert int(grew_kb) < 10 * 1024  # held whole, the output made it grow by about 14× the file (~100 MB)


def test_ffmpeg_of_a_killed_process_dies_with_it() -> None:
    """The parent-death signal: an ffmpeg whose worker process was SIGKILLed does not run on."""
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    script = ("import sys\nfrom tasks import ffmpeg\n"
              "ffmpeg.run(['-re', '-f', 'lavfi', '-i', 'sine=duration=600', '-f', 'null', sys.argv[1]])\n")
    parent = subprocess.Popen([sys.executable, "-c", script, f"/dev/null/{marker}"], cwd=ROOT)

    def running() -> list[str]:
        return subprocess.run(["pgrep", "-f", f"^ffmpeg .*{marker}"], capture_output=True, text=True).stdout.split()

    try:
        wait_until(running, timeout=20, what="ffmpeg started")
        parent.kill()
        parent.wait()
        wait_until(lambda: not running(), timeout=5, what="the orphaned ffmpeg gone")
    finally:
        parent.kill()
        for pid in running():
            subprocess.run(["kill", "-9", pid], check=False)
