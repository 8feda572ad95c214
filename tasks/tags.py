"""ID3 tags and cover art, written with mutagen."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from mutagen.id3 import APIC, ID3, TALB, TIT2, TPE1, TPE2, TRCK, TXXX

from tasks.loudness import ReplayGain


def write_tags(mp3: Path, title: str, artist: str, cover: Path | None, track: str = "", album: str = "",
               album_artist: str = "", replaygain: ReplayGain | None = None,
               album_gain: ReplayGain | None = None) -> None:
    """Title, artist, track ("n/N"), album and album artist (a playlist's title and author), cover, and
    ReplayGain 2.0 of the track (and of its album), as players read them: TXXX:REPLAYGAIN_TRACK_GAIN ..."""
    tags = ID3()  # saving a fresh tag replaces whatever ffmpeg wrote
    if title:
        tags.add(TIT2(encoding=3, text=title))
    if artist:
        tags.add(TPE1(encoding=3, text=artist))
    if track:
        tags.add(TRCK(encoding=3, text=track))
    if album:
        tags.add(TALB(encoding=3, text=album))
    if album_artist:
        tags.add(TPE2(encoding=3, text=album_artist))
    if cover is not None:
        tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover", data=cover.read_bytes()))
    for scope, values in (("TRACK", replaygain), ("ALBUM", album_gain)):
        if values is not None:
            _add_replaygain(tags, scope, values)
    tags.save(mp3, v2_version=3)


def _add_replaygain(tags: ID3, scope: str, values: ReplayGain) -> None:
    tags.add(TXXX(encoding=3, desc=f"REPLAYGAIN_{scope}_GAIN", text=f"{values.gain:+.2f} dB"))
    tags.add(TXXX(encoding=3, desc=f"REPLAYGAIN_{scope}_PEAK", text=f"{values.peak:.6f}"))


def add_album_gain(mp3: Path, album_gain: ReplayGain) -> None:
    """The album's ReplayGain added to a tagged MP3, in a copy renamed over it: whoever reads the file sees it
    whole, before or after, and two writers at once can't mix their bytes."""
    copy = mp3.with_name(f".{mp3.name}.{secrets.token_hex(4)}")
    try:
        shutil.copyfile(mp3, copy)
        tags = ID3(copy)
        _add_replaygain(tags, "ALBUM", album_gain)
        tags.save(copy, v2_version=3)
        os.replace(copy, mp3)
    finally:
        copy.unlink(missing_ok=True)


def write_album_track(mp3: Path, title: str, album: str, artist: str, number: int, total: int,
                      cover: Path | None, replaygain: ReplayGain | None = None,
                      album_gain: ReplayGain | None = None) -> None:
    """One track of an album (a chapter of a video, an entry of a playlist): track n/N, album and album
    artist, the album's cover, ReplayGain."""
    write_tags(mp3, title, artist, cover, track=f"{number}/{total}", album=album, album_artist=artist,
               replaygain=replaygain, album_gain=album_gain)
