"""Every Redis key name the project uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass

# The cache's key version. v1 keyed direct files and web pages by their file name alone, so one
# site could take over another's entry: v1 entries are never read, and expire by themselves.
CACHE = "cache2"
SOURCE = "source2"
# The Celery queues (tasks.celery_app.QUEUES; common does not import tasks). Their lists live under the prefix too.
QUEUES = ("download", "conversion", "cleanup")


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
    def albums_waiting(self) -> str:
        """Sorted set: album job id -> when it was last looked at, while a track of it waits for its last step."""
        return f"{self.prefix}albums_waiting"

    @property
    def finished(self) -> str:
        """Sorted set: 'job_id state seconds' -> finish time, for stats."""
        return f"{self.prefix}finished"

    @property
    def dead(self) -> str:
        """List: dead letters, newest first (JSON)."""
        return f"{self.prefix}dead"

    def cache(self, platform: str, video_key: str, bitrate: int, variant: str = "") -> str:
        """String: a platform's file references for a finished video (JSON); a variant ('chapters') is
        another delivery of the same video."""
        return f"{self.prefix}{CACHE}:{platform}:{video_key}:{bitrate}" + (f":{variant}" if variant else "")

    def split_offer(self, platform: str, ref: str) -> str:
        """String with a TTL: what a "Split into tracks" button under a cached MP3 stands for (JSON, common.cache)."""
        return f"{self.prefix}offer:{platform}:{ref}"

    def cache_hits(self, platform: str) -> str:
        """Hash: hit / miss counters of the cache."""
        return f"{self.prefix}cachestats:{platform}"

    def source(self, fingerprint: str) -> str:
        """String: video identity learnt for a link, so a repeat skips the download."""
        return f"{self.prefix}{SOURCE}:{fingerprint}"

    def user(self, platform: str, user_id: int | str, what: str) -> str:
        """Per-user data: 'settings' (hash, common/usersettings.py), 'bitrate' (before it: read, then moved),
        'active' (set), 'hourly' (sorted set)."""
        return f"{self.prefix}user:{platform}:{user_id}:{what}"

    def pending(self, platform: str) -> str:
        """Hash: deliveries a bot still owes, key -> JSON."""
        return f"{self.prefix}pending:{platform}"

    def bot(self, platform: str) -> str:
        """String with a TTL: a running bot's liveness (JSON, common.stats.BotInfo), rewritten every few seconds."""
        return f"{self.prefix}bot:{platform}"

    @property
    def sweep_lock(self) -> str:
        return f"{self.prefix}lock:sweep"

    def worker(self, hostname: str) -> str:
        """String with a TTL: a live worker's presence (JSON: hostname, queues, concurrency, pid, time)."""
        return f"{self.prefix}worker:{hostname}"

    @property
    def workers(self) -> str:
        """Sorted set: hostname -> time of its last presence write (candidates; the worker key decides)."""
        return f"{self.prefix}workers"

    def cache_pattern(self, platform: str = "*") -> str:
        """SCAN pattern matching a platform's (default: every) cache entries."""
        return f"{self.prefix}{CACHE}:{platform}:*"

    @property
    def cache_hits_pattern(self) -> str:
        """SCAN pattern matching every platform's cache counters."""
        return f"{self.prefix}cachestats:*"

    def cache_platform(self, key: str) -> str:
        """The platform of a cache entry's key."""
        return key.removeprefix(f"{self.prefix}{CACHE}:").split(":", 1)[0]

    def cache_hits_platform(self, key: str) -> str:
        """The platform of a cache counters key."""
        return key.removeprefix(f"{self.prefix}cachestats:")

    # Celery's own keys: kombu's Redis transport puts them under our prefix too (its global_keyprefix).

    def broker_queue(self, queue: str, step: int = 0) -> str:
        """List: a Celery queue's waiting messages at one priority step (0: the queue's own key).

        kombu LPUSHes new messages and BRPOPs from the right end, step 0 first.
        """
        return f"{self.prefix}{queue}\x06\x16{step}" if step else f"{self.prefix}{queue}"

    @property
    def broker_unacked(self) -> str:
        """Hash: delivery tag -> [message, exchange, routing key] taken by a worker, not yet acked."""
        return f"{self.prefix}unacked"

    def job_lease(self, job_id: str) -> str:
        """String: the task running the job's stage now; expires when its heartbeat stops."""
        return f"{self.prefix}job:{job_id}:lease"

    @property
    def watchdog_lock(self) -> str:
        return f"{self.prefix}lock:watchdog"

    @property
    def site_holds(self) -> str:
        """Hash: site -> time (epoch seconds) before which no download for it starts (it rate-limited us)."""
        return f"{self.prefix}siteholds"

    @property
    def alerts(self) -> str:
        """Stream: admin alerts (kind, text, time), read by one consumer group per bot platform."""
        return f"{self.prefix}alerts"

    def alert_sent(self, kind: str) -> str:
        """String with a TTL of ALERT_INTERVAL: an alert of this kind went out; the next waits."""
        return f"{self.prefix}alert:{kind}"

    def route(self, route_id: str) -> str:
        """Hash: a download route's state (common/routes.py): ok, failed, last_ok, last_failed, last_error."""
        return f"{self.prefix}route:{route_id}"

    def route_rests(self, route_id: str) -> str:
        """Sorted set: the sites a route rests for (it failed there), scored by when the rest ends."""
        return f"{self.prefix}route:{route_id}:rests"

    def route_recent(self, route_id: str) -> str:
        """List: a route's last outcomes, newest first ("<time> ok" or "<time> <error code>")."""
        return f"{self.prefix}route:{route_id}:recent"

    @property
    def stale_cookies(self) -> str:
        """Hash: cookie file path -> JSON {fingerprint, since} of the content a site called no longer valid."""
        return f"{self.prefix}cookies:stale"

    def metric(self, name: str) -> str:
        """Hash: one metric family's counters, label set (and histogram bucket) -> count (common/metrics.py)."""
        return f"{self.prefix}metrics:{name}"
