"""An album's ReplayGain: one value on all its tracks, from every track's measurement, before any is delivered.

A playlist's tracks are jobs of their own, converted side by side, each measured as it is encoded
(tasks/loudness.py). Album gain needs them all, and a track delivered before the last one is measured could
not carry it: so a track whose MP3 is done does not become ready but waits (state CLEANING, step
common.albums.WAITING; its album's status counts it done). Whichever track settles last (done, failed or
cancelled: tasks/lifecycle.py) sends the album's step, `tasks.album_gain`: it computes the album's gain from
the tracks' gains, peaks and durations, adds REPLAYGAIN_ALBUM_GAIN/PEAK to every waiting track's MP3 (a tag
rewrite, no encode) and makes it ready. The bots deliver ready tracks in playlist order as ever: an album's
tracks arrive together once all are done, every one with the same album gain.

Should that send be lost (its worker killed, Redis away for a moment), the watchdog sends it again
(tasks/watchdog.py, check_albums). So the step may run twice (also when two tracks settle at once): it reads
the same records, computes the same gain and writes the same tags; a track already ready is left alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mutagen import MutagenError

from common import albums, context
from common.errors import Code, JobError
from common.jobs import Job, State, Written
from tasks import lifecycle, loudness
from tasks.tags import add_album_gain

log = logging.getLogger(__name__)


def album_gain(tracks: list[Job]) -> loudness.ReplayGain | None:
    """The album's ReplayGain from its tracks' own (those with an MP3, measured); None if none was."""
    done = [t for t in tracks if t.state in (State.READY, State.DELIVERED) or albums.waiting(t)]
    return loudness.album((loudness.ReplayGain(*t.replaygain[:2]), t.duration or 0.0) for t in done
                          if len(t.replaygain) >= 2)


def finish(album_id: str) -> int:
    """Tag the album's waiting tracks with its ReplayGain and make them ready; returns how many."""
    store = context.store()
    album = store.get(album_id)
    if album is None or album.state in (State.CANCELLED, State.FAILED):
        return 0
    tracks, _ = store.snapshot(album.entries)
    if not all(albums.settled(t) for t in tracks):
        return 0  # a track is at work again (its stage sent again): its end sends this step once more
    gain = album_gain(tracks)
    if gain is not None:
        store.update_unless_finished(album_id, replaygain=[gain.gain, gain.peak])
    readied = 0
    # The last first: the bots send from the first track on, so they find them all ready at once (one
    # Telegram album message for up to 10), not the first alone.
    for track in reversed([t for t in tracks if albums.waiting(t)]):
        if gain is None or _tagged(track, gain):
            readied += lifecycle.album_ready(track.id) is Written.DONE
    store.redis.zrem(store.keys.albums_waiting, album_id)  # a track that waits again (its stage sent again) adds it
    log.info("album %s: %d tracks ready, album gain %s", album_id, readied, gain)
    return readied


def _tagged(track: Job, gain: loudness.ReplayGain) -> bool:
    """The album's gain added to each of the track's MP3s; False (the track failed) if they can't be written."""
    try:
        for file in track.files:
            add_album_gain(Path(file), gain)
    except (OSError, MutagenError) as error:  # its files went (cancelled meanwhile), or are no MP3
        lifecycle.fail(track.id, JobError(Code.INTERNAL, f"album gain: {error}"), lifecycle.ALBUM_STEP)
        return False
    return True
