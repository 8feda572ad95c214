"""A user's settings record read back tolerantly (real Redis): garbled or unknown fields are the defaults."""

from __future__ import annotations

import uuid

import pytest

from common import context, i18n, usersettings
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


@pytest.mark.usefixtures("test_env")
def test_loudness_and_album_confirmation_are_kept_and_offered_as_the_deployment_allows() -> None:
    client, keys = context.redis_client(), context.keys()
    settings = Settings(loudness=-18, album_confirm=10)
    user = uuid.uuid4().int % 10**9
    fresh = run(client, usersettings.load(keys, settings, "telegram", user))
    assert (fresh.loudness, fresh.confirm_albums) == (-18, True)  # the deployment's LOUDNESS and ALBUM_CONFIRM
    rows = usersettings.choices(fresh, settings, i18n.get("en"))
    assert [label for _, _, label in rows[1]] == ["Loudness off", "-14 LUFS", "-16 LUFS", "✓ -18 LUFS", "-23 LUFS"]
    assert rows[3] == [("confirm_albums", "off", "Ask before albums of over 10 tracks: on")]

    run(client, usersettings.change(keys, settings, "telegram", user, "loudness", "-14"))
    saved = run(client, usersettings.change(keys, settings, "telegram", user, "confirm_albums", "off"))
    assert (saved.loudness, saved.confirm_albums) == (-14, False)
    assert client.hget(keys.user("telegram", user, usersettings.RECORD), "loudness") == b"-14"
    assert run(client, usersettings.load(keys, settings, "telegram", user)) == saved
    assert run(client, usersettings.change(keys, settings, "telegram", user, "loudness", "off")).loudness is None
    for value in ("-3", "loud", "nan"):  # outside LOUDNESS's range or no number: refused, as a garbled record is
        with pytest.raises(ValueError):
            run(client, usersettings.change(keys, settings, "telegram", user, "loudness", value))

    never = Settings(album_confirm=0)  # a deployment that never asks: no album row, and nothing to ask
    assert not usersettings.UserSettings.defaults(never).confirm_albums
    assert len(usersettings.choices(usersettings.UserSettings.defaults(never), never, i18n.get("en"))) == 3


@pytest.mark.parametrize(("typed", "code"), [
    ("es", "es"), ("pt-BR", "pt_BR"), ("pt", "pt_BR"), ("RU", "ru"), ("Español", "es"), ("bahasa indonesia", "id"),
    ("auto", ""), ("Automatic", ""), ("klingon", None), ("de", None), ("", None),
])
def test_a_language_as_typed_after_language(typed: str, code: str | None) -> None:
    assert usersettings.language_code(typed) == code


def test_automatic_is_stored_as_no_choice_and_languages_are_offered_in_their_own_names() -> None:
    chosen = usersettings.UserSettings(192, False).changed("language", "fa")
    assert chosen.language == "fa" and chosen.changed("language", usersettings.AUTOMATIC).language == ""
    with pytest.raises(ValueError):
        chosen.changed("language", "klingon")
    labels = [label for row in usersettings.language_choices(chosen, i18n.get("en")) for _, _, label in row]
    assert labels == ["Automatic", "English", "Русский", "Español", "Português (Brasil)", "Bahasa Indonesia",
                      "Türkçe", "✓ فارسی"]
