"""Submitting, sharing, cancelling and retrying jobs: the API the bots and the CLI use."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from celery import Signature, chain, group

from common import context
from common.cache import variant
from common.jobs import Job, State, new_job_id
from common.links import normalize
from common.settings import get_settings
from tasks import lifecycle
from tasks.celery_app import app

# Stage -> task name; sent by name so that the chat processes never import yt-dlp.
STAGES = {State.DOWNLOADING: "tasks.download", State.CONVERTING: "tasks.convert", State.CLEANING: "tasks.cleanup"}


def fingerprint(url: str, bitrate: int, limit_bytes: int | None, *more: str) -> str:
    """Identical requests (same link, quality and delivery limit, and `more`: entry range, album track, the
    delivery's variant) share one job."""
    return hashlib.sha256(json.dumps([normalize(url), bitrate, limit_bytes, *more]).encode()).hexdigest()[:24]


def submit(
    url: str, bitrate: int | None = None, limit_bytes: int | None = None, origin: dict[str, Any] | None = None,
    items: str = "",
    split: bool = False,
    clip: str = "",
    loudness: float | None = None,
    confirm_albums: bool = True,
) -> tuple[str, bool]:
    """Start a job, or join the identical one in flight. Returns (job id, joined).

    `items`: of a playlist, the entries wanted ("2-5", common.albums.entry_range).
    `clip`: the range of the video to convert, as common.clip's Clip.key ("" for all of it).
    `loudness`: the MP3's LUFS target (None: as loud as the source; LOUDNESS is the callers' default).
    `confirm_albums`: False, a playlist of more than ALBUM_CONFIRM entries starts without waiting for a yes.
    """
    settings = get_settings()
    bitrate = bitrate or settings.mp3_bitrate
    job = new_job(url, bitrate, limit_bytes, items, split, clip, loudness, confirm_albums)
    job_id, joined = context.store().claim(job, origin)
    if not joined:
        send(job_id)
    return job_id, joined


def new_job(url: str, bitrate: int, limit_bytes: int | None, items: str = "", split: bool = False,
            clip: str = "", loudness: float | None = None, confirm_albums: bool = True) -> Job:
    """A job for a request, before it is claimed (common.jobs.claim): identical requests share one (asking
    about a large album or not makes no other MP3: whoever joins gets the first requester's choice)."""
    more = [items] if items else []
    if delivery := variant(clip, split, loudness):  # a range, one MP3 per chapter, a loudness: another delivery
        more.append(delivery)
    return Job(id=new_job_id(), url=url, bitrate=bitrate, limit_bytes=limit_bytes, items=items, split=split,
               clip=clip, loudness=loudness, confirm_albums=confirm_albums,
               fingerprint=fingerprint(url, bitrate, limit_bytes, *more))


def chain_of(job_id: str, first: State = State.DOWNLOADING) -> Signature:
    """The chain of a job's stages from `first` on, each to its own queue."""
    stages = list(STAGES)
    return chain(*(app.signature(STAGES[s], (job_id,), immutable=True) for s in stages[stages.index(first):]))


def send(job_id: str, first: State = State.DOWNLOADING) -> None:
    """Send the chain of stages from `first` on."""
    chain_of(job_id, first).apply_async()


def start_album(job_id: str) -> bool:
    """Start an album that waited for its requester's yes; False when it is not waiting (any more)."""
    store = context.store()
    job = store.get(job_id)
    if job is None or not job.confirm or not store.update_unless_finished(job_id, confirm=False):
        return False
    waiting = [t for t in job.entries if store.state(t) == State.QUEUED]
    group(chain_of(t) for t in waiting).apply_async()
    return True


def cancel(job_id: str) -> bool:
    """Stop a job wherever it is (an album: with all its tracks); False when it had already finished."""
    job = context.store().get(job_id)
    stopped = lifecycle.cancelled(job_id)
    for track in job.entries if job is not None else []:
        lifecycle.cancelled(track)
    return stopped


def retry(job_id: str) -> str | None:
    """Run a failed or cancelled job's link again as a new job, for the same requesters."""
    store = context.store()
    job = store.get(job_id)
    if job is None or job.state not in (State.FAILED, State.CANCELLED):
        return None
    # Marked so that the bots adopt the new job for the people who asked for the old one.
    origins = [{**origin, "retry_of": job_id} for origin in store.origins(job_id)]
    new_id, _ = submit(job.url, job.bitrate, job.limit_bytes, origins[0] if origins else None, job.items,
                       job.split, job.clip, job.loudness, job.confirm_albums)
    for origin in origins[1:]:
        store.add_origin(new_id, origin)
    return new_id
