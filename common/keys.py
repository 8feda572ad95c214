"""Every Redis key name the project uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "ytmp3:"

    def job(self, job_id: str) -> str:
        """Hash: the job record."""
        return f"{self.prefix}job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """Stream: one job's history of changes."""
        return f"{self.prefix}job:{job_id}:events"

    def job_origins(self, job_id: str) -> str:
        """List: who asked for the job (JSON origins), in order."""
        return f"{self.prefix}job:{job_id}:origins"

    def job_delivered(self, job_id: str) -> str:
        """Set: ids of the origins that got the MP3."""
        return f"{self.prefix}job:{job_id}:delivered"

    @property
    def events(self) -> str:
        """Stream: changes of every job, for the bots."""
        return f"{self.prefix}events"

    def inflight(self, fingerprint: str) -> str:
        """String: job id of the job in flight for this request fingerprint."""
        return f"{self.prefix}inflight:{fingerprint}"

    @property
    def running(self) -> str:
        """Sorted set: job id -> last heartbeat of its running stage."""
        return f"{self.prefix}running"

    @property
    def finished(self) -> str:
        """Sorted set: 'job_id state seconds' -> finish time, for stats."""
        return f"{self.prefix}finished"

    @property
    def dead(self) -> str:
        """List: dead letters, newest first (JSON)."""
        return f"{self.prefix}dead"

    def cache(self, platform: str, video_key: str, bitrate: int) -> str:
        """String: a platform's file reference for a finished video (JSON)."""
        return f"{self.prefix}cache:{platform}:{video_key}:{bitrate}"

    def cache_hits(self, platform: str) -> str:
        """Hash: hit / miss counters of the cache."""
        return f"{self.prefix}cachestats:{platform}"

    def source(self, fingerprint: str) -> str:
        """String: video identity learnt for a link, so a repeat skips the download."""
        return f"{self.prefix}source:{fingerprint}"

    def user(self, platform: str, user_id: int | str, what: str) -> str:
        """Per-user data: 'bitrate', 'active' (set), 'hourly' (sorted set)."""
        return f"{self.prefix}user:{platform}:{user_id}:{what}"

    def pending(self, platform: str) -> str:
        """Hash: deliveries a bot still owes, key -> JSON."""
        return f"{self.prefix}pending:{platform}"

    @property
    def sweep_lock(self) -> str:
        return f"{self.prefix}lock:sweep"
