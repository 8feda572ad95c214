"""Per-user limits, the queue cap and the disk caps, against the real Redis and file system."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from common import context, limits
from common.limits import Limits
from common.settings import Settings


@pytest.fixture
def user_limits(test_env: dict[str, str]) -> Limits:
    return Limits(context.redis_client(), context.keys(), "test", at_once=2, per_hour=3, queue_cap=5)


def test_two_at_once_then_a_clear_no(user_limits: Limits) -> None:
    user = uuid.uuid4().hex
    assert user_limits.reserve(user, "a", waiting=0) is None
    assert user_limits.reserve(user, "b", waiting=0) is None
    refusal = user_limits.reserve(user, "c", waiting=0)
    assert refusal and "already have 2 conversions running" in refusal.text
    user_limits.release(user, "a")
    assert user_limits.reserve(user, "c", waiting=0) is None


def test_hourly_limit_says_when_to_come_back(user_limits: Limits) -> None:
    user = uuid.uuid4().hex
    for request in ("a", "b", "c"):
        assert user_limits.reserve(user, request, waiting=0) is None
        user_limits.release(user, request)
    refusal = user_limits.reserve(user, "d", waiting=0)
    assert refusal and "reached 3 conversions this hour" in refusal.text and "60 minutes" in refusal.text


def test_full_queue_means_busy_for_everyone(user_limits: Limits) -> None:
    refusal = user_limits.reserve(uuid.uuid4().hex, "a", waiting=5)
    assert refusal and "busy" in refusal.text


def test_disk_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp, storage = tmp_path / "tmp", tmp_path / "out"
    (storage / "job").mkdir(parents=True)
    (storage / "job" / "a.mp3").write_bytes(b"x" * 5000)
    roomy = Settings(temp_dir=temp, storage_dir=storage, max_storage_bytes=10_000, min_free_bytes=1)
    monkeypatch.setattr(limits, "_disk_checked", (0.0, False))
    assert not limits.disk_full(roomy)
    tight = Settings(temp_dir=temp, storage_dir=storage, max_storage_bytes=4000, min_free_bytes=1)
    monkeypatch.setattr(limits, "_disk_checked", (0.0, False))
    assert limits.disk_full(tight)
    no_room = Settings(temp_dir=temp, storage_dir=storage, min_free_bytes=10**18)
    monkeypatch.setattr(limits, "_disk_checked", (0.0, False))
    assert limits.disk_full(no_room)
