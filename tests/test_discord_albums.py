"""Albums through the Discord bot end to end: a feed's tracks as files in feed order, one status that counts them."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from mutagen.id3 import ID3

from tests.conftest import BotProcess
from tests.fake_discord import FakeDiscord
from tests.media import MediaServer
from tests.test_discord import CHANNEL, GUILD, TOKEN, new_id, started, wait_files, wait_original

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord(guild_id=GUILD, channel_id=CHANNEL, token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeDiscord, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[BotProcess]:
    env = {**test_env, "DISCORD_TOKEN": TOKEN, "DISCORD_API_URL": fake.api_url,
           "DISCORD_GATEWAY_URL": fake.gateway_url, "DISCORD_GUILD_ID": str(GUILD)}
    process = BotProcess("discord", env, tmp_path_factory.mktemp("discord-albums") / "bot.log")
    process.start(started(fake))
    yield process
    process.stop()


def test_a_feed_arrives_as_files_in_feed_order(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    slow = media.url("/slow/24000/opus.webm", n=uuid.uuid4().hex)  # the first finishes last, and still comes first
    url = media.url("/feed", count="3", first=slow, n=uuid.uuid4().hex)
    token = fake.slash_command("mp3", {"url": url}, user_id=user, channel_id=channel)
    running = wait_original(fake, token, r"💿 .*A feed.*of 3 done", timeout=30)
    assert any(c["custom_id"].startswith("cancel:") for row in running["components"] for c in row["components"])
    files = wait_files(fake, count=3, token=token)
    found = [ID3(io.BytesIO(f.data)) for f in files]
    assert [(t["TIT2"].text[0], t["TALB"].text[0], t["TRCK"].text[0]) for t in found] == [
        ("Episode 1", "A feed", "1/3"), ("Episode 2", "A feed", "2/3"), ("Episode 3", "A feed", "3/3")]
    wait_original(fake, token, r"✅ .*A feed.*3 tracks delivered", timeout=15)
