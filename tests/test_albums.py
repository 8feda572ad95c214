"""Playlists and feeds as albums, through the real worker: one job per entry, tagged as tracks of the album."""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from mutagen.id3 import ID3

from common import albums, context, i18n
from common.albums import EntriesError, entries_in, entry_range, picked_entries, progress, skipped_text
from common.errors import Code
from common.jobs import Job, State, new_job_id
from tasks import feeds, images, loudness, pipeline, watchdog
from tasks.tags import write_tags
from tests.conftest import deliver, origin, wait_job, wait_until
from tests.media import FFMPEG, MediaServer, make_image, make_tone

pytestmark = pytest.mark.usefixtures("worker")

AUDIO_PAGE = ('<html><head><title>Three songs</title><meta property="og:image" content="{cover}"></head><body>'
              '<audio src="opus.webm?a={n}"></audio><audio src="audio.m4a?b={n}"></audio>'
              '<audio src="opus.webm?c={n}"></audio></body></html>')


def wait_album(job_id: str, tracks: int) -> tuple[Job, list[Job]]:
    """The album's record once it names its tracks, and every track once finished."""
    store = context.store()
    album = wait_until(lambda: (j := store.get(job_id)) is not None and (j.entries or j.state.finished) and j,
                       timeout=60)
    assert album.state not in (State.FAILED, State.CANCELLED), album.error_text
    assert len(album.entries) == tracks
    return album, [wait_job(t) for t in album.entries]


def test_a_feed_becomes_an_album_of_tagged_tracks_in_feed_order(media: MediaServer) -> None:
    url = media.url("/feed", count="3", n=uuid.uuid4().hex)
    album, tracks = wait_album(pipeline.submit(url, origin=origin())[0], 3)
    assert album.album == "A feed" and album.tracks == 3
    for number, track in enumerate(tracks, 1):
        assert track.state == State.READY, track.error_text
        tags = ID3(track.files[0])
        assert tags["TIT2"].text == [f"Episode {number}"]
        assert tags["TALB"].text == ["A feed"]
        assert tags["TRCK"].text == [f"{number}/3"]
        assert track.parent == album.id
        deliver(track.id)


def cover_size(mp3: str) -> tuple[int, int] | None:
    """The size of the MP3's cover (APIC), as its JPEG header states it; None without one."""
    pictures = ID3(mp3).getall("APIC")
    return images.size(pictures[0].data) if pictures else None


def test_a_dated_feed_comes_newest_first_with_the_feeds_cover(media: MediaServer, media_dir: Path) -> None:
    own = make_image(media_dir / "square.jpg", 200, 200)  # the feed's is cover.jpg, 640×360: 320×180 as a cover
    url = media.url("/feed", count="3", dates="2,5,1", art=media.media_url("cover.jpg"),
                    art1=media.media_url(own.name), n=uuid.uuid4().hex)
    _, tracks = wait_album(pipeline.submit(url, origin=origin())[0], 3)
    assert [ID3(t.files[0])["TIT2"].text for t in tracks] == [["Episode 2"], ["Episode 1"], ["Episode 3"]]
    assert [ID3(t.files[0])["TRCK"].text for t in tracks] == [["1/3"], ["2/3"], ["3/3"]]
    # Episodes without an image of their own carry the feed's; Episode 1 keeps its own.
    assert [cover_size(t.files[0]) for t in tracks] == [(320, 180), (200, 200), (320, 180)]
    for track in tracks:
        deliver(track.id)


def test_a_range_of_a_dated_feed_counts_from_the_newest(media: MediaServer) -> None:
    url = media.url("/feed", count="5", dates="1,2,3,4,5", n=uuid.uuid4().hex)
    _, tracks = wait_album(pipeline.submit(url, origin=origin(), items="2-3")[0], 2)
    assert [ID3(t.files[0])["TIT2"].text for t in tracks] == [["Episode 4"], ["Episode 3"]]
    assert [ID3(t.files[0])["TRCK"].text for t in tracks] == [["1/2"], ["2/2"]]
    assert [cover_size(t.files[0]) for t in tracks] == [None, None]  # no image anywhere: no cover
    for track in tracks:
        deliver(track.id)


def test_a_feed_with_undated_entries_keeps_its_order() -> None:
    entries = [{"title": "a", "timestamp": 1}, {"title": "b"}, {"title": "c", "upload_date": "20240105"}]
    assert feeds.newest_first(entries) == entries
    entries[1]["upload_date"] = "20240101"
    assert [e["title"] for e in feeds.newest_first(entries)] == ["c", "b", "a"]


def test_a_page_with_several_audio_elements_is_an_album(media: MediaServer, media_dir: Path) -> None:
    n = uuid.uuid4().hex
    (media_dir / f"songs-{n}.html").write_text(AUDIO_PAGE.format(n=n, cover=media.media_url("cover.jpg")))
    album, tracks = wait_album(pipeline.submit(media.media_url(f"songs-{n}.html"), origin=origin())[0], 3)
    assert album.album == "Three songs"
    assert [ID3(t.files[0])["TRCK"].text for t in tracks] == [["1/3"], ["2/3"], ["3/3"]]
    assert all(ID3(t.files[0])["TALB"].text == ["Three songs"] for t in tracks)
    assert all(cover_size(t.files[0]) == (320, 180) for t in tracks)  # the page's image is the album's cover
    for track in tracks:
        deliver(track.id)


def test_a_range_picks_entries(media: MediaServer) -> None:
    url = media.url("/feed", count="5", n=uuid.uuid4().hex)
    _, tracks = wait_album(pipeline.submit(url, origin=origin(), items="2-3")[0], 2)
    assert [ID3(t.files[0])["TIT2"].text for t in tracks] == [["Episode 2"], ["Episode 3"]]
    assert [ID3(t.files[0])["TRCK"].text for t in tracks] == [["1/2"], ["2/2"]]
    for track in tracks:
        deliver(track.id)


def replaygain(mp3: str, scope: str) -> tuple[float, float]:
    """The MP3's ReplayGain tags of that scope (TRACK, ALBUM) as (gain dB, peak)."""
    tags = ID3(mp3)
    gain, peak = tags[f"TXXX:REPLAYGAIN_{scope}_GAIN"], tags[f"TXXX:REPLAYGAIN_{scope}_PEAK"]
    return float(gain.text[0].removesuffix(" dB")), float(peak.text[0])


def test_every_track_carries_the_albums_replaygain(media: MediaServer, media_dir: Path) -> None:
    # "album-quiet": test_loudness makes a quiet.webm of its own in the same folder
    quiet = make_tone(media_dir / "album-quiet.webm", 4, "Quiet", volume=0.05)  # 20 dB below the others, half as long
    url = media.url("/feed", count="3", first=media.media_url(quiet.name), n=uuid.uuid4().hex)
    album, tracks = wait_album(pipeline.submit(url, origin=origin())[0], 3)
    assert [t.state for t in tracks] == [State.READY] * 3
    own = [replaygain(t.files[0], "TRACK") for t in tracks]
    assert own[0][0] > own[1][0] + 15
    album_gains = {replaygain(t.files[0], "ALBUM") for t in tracks}
    assert len(album_gains) == 1  # the same on every track, whichever finished first
    [(gain, peak)] = album_gains
    expected = loudness.album((loudness.ReplayGain(*g), t.duration or 0) for g, t in zip(own, tracks, strict=True))
    assert expected is not None and (gain, peak) == (expected.gain, expected.peak)
    # Energy by duration: the two loud tracks weigh most, the quiet one (a fifth of the time) adds about 1 dB.
    assert own[1][0] + 0.5 < gain < own[1][0] + 1.5
    assert peak == max(p for _, p in own)
    assert (context.store().get(album.id) or album).replaygain == [gain, peak]
    for track in tracks:
        deliver(track.id)


def waiting_album(storage: Path, media_dir: Path, states: list[State]) -> tuple[Job, list[Job]]:
    """An album whose tracks are in these states, as the pipeline leaves them; the waiting ones with a tagged MP3."""
    store = context.store()
    album = Job(id=new_job_id(), url=f"http://127.0.0.1:9/{uuid.uuid4().hex}", state=State.DOWNLOADING)
    tracks = []
    for number, state in enumerate(states, 1):
        track = Job(id=new_job_id(), url=f"{album.url}/{number}", state=state, parent=album.id, track=number,
                    tracks=len(states), duration=8.0, replaygain=[-3.0 * number, 0.5 * number])
        if state == State.CLEANING:
            mp3 = storage / track.id / "run" / f"{number}.mp3"
            mp3.parent.mkdir(parents=True)
            subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-i", str(media_dir / "opus.webm"),
                            "-c:a", "libmp3lame", str(mp3)], check=True)
            write_tags(mp3, f"Track {number}", "", None, replaygain=loudness.ReplayGain(*track.replaygain))
            track = replace(track, step=albums.WAITING, files=[str(mp3)])
        store.create(track)
        tracks.append(track)
    album = replace(album, entries=[t.id for t in tracks], tracks=len(tracks))
    store.create(album)
    return album, tracks


def test_an_album_whose_last_step_was_lost_gets_it_from_the_watchdog(media_dir: Path,
                                                                     test_env: dict[str, str]) -> None:
    # The last track's worker died after its record said "waiting", before it sent the album's step.
    storage = Path(test_env["STORAGE_DIR"])
    album, tracks = waiting_album(storage, media_dir, [State.CLEANING, State.CLEANING])
    busy, _ = waiting_album(storage, media_dir, [State.CLEANING, State.CONVERTING])  # a track still at work
    store = context.store()
    # Taken from the session worker's watchdog (it looks every few seconds) for this one look.
    wait_until(lambda: store.redis.set(store.keys.watchdog_lock, "test", nx=True, ex=10), timeout=10)
    store.redis.zadd(store.keys.albums_waiting, {album.id: time.time() - 60, busy.id: time.time() - 60})
    sent = watchdog.check_albums()
    store.redis.delete(store.keys.watchdog_lock)
    assert album.id in sent and busy.id not in sent
    assert store.redis.zscore(store.keys.albums_waiting, busy.id) is not None  # looked at again later
    assert [wait_job(t.id).state for t in tracks] == [State.READY] * 2
    expected = loudness.album([(loudness.ReplayGain(-3.0, 0.5), 8.0), (loudness.ReplayGain(-6.0, 1.0), 8.0)])
    assert expected is not None
    assert [replaygain(t.files[0], "ALBUM") for t in tracks] == [(expected.gain, expected.peak)] * 2
    assert store.redis.zscore(store.keys.albums_waiting, album.id) is None
    for track in tracks:
        deliver(track.id)
    assert pipeline.cancel(busy.id)
    assert store.redis.zscore(store.keys.albums_waiting, busy.id) is None


def test_an_unavailable_entry_is_skipped_and_counted(media: MediaServer) -> None:
    url = media.url("/feed", count="3", first=media.url("/status/404/opus.webm", n=uuid.uuid4().hex),
                    n=uuid.uuid4().hex)
    album, tracks = wait_album(pipeline.submit(url, origin=origin())[0], 3)
    assert tracks[0].state == State.FAILED and tracks[0].error_code == Code.NOT_FOUND
    assert [t.state for t in tracks[1:]] == [State.READY, State.READY]
    summary = progress(list(tracks), album.tracks)
    assert summary.finished and summary.done == 2
    assert skipped_text(summary, i18n.get("en")) == "1 unavailable, skipped"
    assert replaygain(tracks[1].files[0], "ALBUM") == replaygain(tracks[2].files[0], "ALBUM")
    for track in tracks[1:]:
        deliver(track.id)


def test_cancelling_an_album_cancels_its_tracks(media: MediaServer) -> None:
    url = media.url("/feed", count="3", via="/slow/65536/opus.webm", n=uuid.uuid4().hex)
    job_id = pipeline.submit(url, origin=origin())[0]
    store = context.store()
    album = wait_until(lambda: (j := store.get(job_id)) is not None and j.entries and j, timeout=60)
    assert pipeline.cancel(job_id)
    assert [wait_job(t).state for t in album.entries] == [State.CANCELLED] * 3


def test_entry_ranges_are_told_from_trims() -> None:
    assert entry_range("1-10") == "1-10"
    assert entry_range(" 2 - 3 ") == "2-3"
    assert entry_range("1:30-4:05") is None
    assert entry_range("5-2") is None
    assert entry_range("0-3") is None


def test_entries_asked_for_in_words_or_a_field_of_their_own() -> None:
    assert entries_in(["https://x.test/feed", "1:30-4:05", "2-5"]) == "2-5"
    assert entries_in(["https://x.test/feed"]) == ""
    assert picked_entries(" 2 - 3 ") == "2-3"
    for wrong in ("two", "5-2", "1:30-4:05", ""):
        with pytest.raises(EntriesError, match="such as 2-5"):
            picked_entries(wrong)
