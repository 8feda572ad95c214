"""A user's settings record read back tolerantly (real Redis): garbled or unknown fields are the defaults."""

from __future__ import annotations

import uuid

import pytest

from common import context, usersettings
from common.redisio import run
from common.settings import Settings


@pytest.mark.usefixtures("test_env")
def test_garbled_and_unknown_fields_read_as_defaults_and_the_old_bitrate_moves() -> None:
    client, keys, settings = context.redis_client(), context.keys(), Settings(mp3_bitrate=192)
    user = uuid.uuid4().int % 10**9
    record = keys.user("discord", user, usersettings.RECORD)
    client.hset(record, mapping={"bitrate": "999", "split_chapters": "maybe", "from_a_newer_version": "x"})
    assert run(client, usersettings.load(keys, settings, "discord", user)) == usersettings.UserSettings(192, False)
    client.delete(record)
    client.set(keys.user("discord", user, "bitrate"), "320")  # what /bitrate wrote before /settings
    assert run(client, usersettings.load(keys, settings, "discord", user)).bitrate == 320
    saved = run(client, usersettings.change(keys, settings, "discord", user, "split_chapters", "on"))
    assert saved == usersettings.UserSettings(320, True)
    assert client.get(keys.user("discord", user, "bitrate")) is None
    assert run(client, usersettings.load(keys, settings, "telegram", user)).bitrate == 192  # per platform
    with pytest.raises(ValueError):
        run(client, usersettings.change(keys, settings, "discord", user, "bitrate", "100"))
