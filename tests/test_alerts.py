"""Admin alerts in Redis (once per kind per interval, each platform its own reading) and site holds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from common import alerts, context
from common.settings import get_settings
from tasks import sitehold


@pytest.fixture
def clean(test_env: dict[str, str]) -> Iterator[None]:
    """No alert stream, no interval running, no hold: as on a new deployment."""
    client, keys = context.redis_client(), context.keys()
    client.delete(keys.alerts, keys.site_holds, *(keys.alert_sent(kind) for kind in alerts.TEXT))
    yield
    client.delete(keys.alerts, keys.site_holds, *(keys.alert_sent(kind) for kind in alerts.TEXT))


@pytest.mark.usefixtures("clean")
def test_one_alert_per_kind_per_interval() -> None:
    assert alerts.raise_alert("bot_check")
    assert not alerts.raise_alert("bot_check")
    assert alerts.raise_alert("js_runtime")
    client, keys = context.redis_client(), context.keys()
    assert 0 < client.ttl(keys.alert_sent("bot_check")) <= get_settings().alert_interval
    kinds = [fields[b"kind"].decode() for _, fields in client.xrange(keys.alerts)]
    assert kinds == ["bot_check", "js_runtime"]
    assert not alerts.raise_alert("no_such_kind")


@pytest.mark.usefixtures("clean")
def test_each_platform_reads_each_alert_once_and_again_if_it_never_confirmed() -> None:
    alerts.raise_alert("cookies_expired")
    [(first_id, alert)] = alerts.unread("telegram")
    assert alerts.message(alert) == "⚠️ ytmp3 needs you: " + alerts.TEXT["cookies_expired"]
    assert alerts.unread("telegram") == [(first_id, alert)]  # taken, not confirmed: a restarted bot sends it
    alerts.delivered("telegram", first_id)
    assert alerts.unread("telegram") == []
    assert [i for i, _ in alerts.unread("discord")] == [first_id]  # the other platform has its own reading


@pytest.mark.usefixtures("clean")
def test_an_alert_gone_from_the_stream_or_too_old_is_not_sent() -> None:
    alerts.raise_alert("no_format")
    [(alert_id, _)] = alerts.unread("telegram")
    context.redis_client().xdel(context.keys().alerts, alert_id)  # trimmed away meanwhile
    [(again, gone)] = alerts.unread("telegram")
    assert again == alert_id and alerts.message(gone) is None
    old = {"kind": "bot_check", "text": alerts.TEXT["bot_check"], "time": str(time.time() - alerts.MAX_AGE - 1)}
    assert alerts.message(old) is None


def test_an_alert_that_cannot_be_queued_is_logged_not_raised(closed_port: int, monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The job that raised it ends as it would have (its own failure reaches the user), with one line in the log."""
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port}/0")
    context.reset()
    try:
        assert not alerts.raise_alert("bot_check")
    finally:
        monkeypatch.undo()
        context.reset()
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "common.alerts"] == [
        "admin alert bot_check not queued"]


def test_a_link_belongs_to_its_extractors_site(capfd: pytest.CaptureFixture[str]) -> None:
    youtube = ["https://youtu.be/dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
               "https://www.youtube.com/playlist?list=PLBCF2DAC6FFB574DE", "https://m.youtube.com/shorts/dQw4w9WgXcQ"]
    assert {sitehold.site_of(url) for url in youtube} == {"youtube"}
    assert sitehold.site_of("https://soundcloud.com/artist/a-song") == "soundcloud"
    assert sitehold.site_of("https://www.example.org/files/song.mp3") == "example.org"
    assert capfd.readouterr().err == ""  # every download asks: yt-dlp's plugins are loaded once, not per link


@pytest.mark.usefixtures("clean")
def test_a_hold_keeps_its_sites_downloads_waiting_until_it_ends() -> None:
    now = time.time()
    assert sitehold.held_for("https://youtu.be/dQw4w9WgXcQ", now) == 0
    sitehold.hold("youtube", 600)
    assert 590 < sitehold.held_for("https://youtu.be/dQw4w9WgXcQ") <= 600
    assert sitehold.held_for("https://soundcloud.com/artist/a-song") == 0
    assert sitehold.held_for("https://youtu.be/dQw4w9WgXcQ", now + 601) == 0
    sitehold.hold("soundcloud", -1)  # an ended hold is forgotten when the next one is written
    sitehold.hold("bandcamp", 60)
    assert set(context.redis_client().hkeys(context.keys().site_holds)) == {b"youtube", b"bandcamp"}
