"""Albums through the Discord bot end to end: a feed's tracks as files in feed order, several to a message within
the upload limit, one status that counts them; `tracks:` picks entries."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from mutagen.id3 import ID3

from tests.conftest import BotProcess
from tests.fake_discord import FakeDiscord, StoredAttachment
from tests.media import MediaServer
from tests.test_discord import CHANNEL, EPHEMERAL, GUILD, TOKEN, new_id, plain, started, wait_files, wait_original

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


def tags(file: StoredAttachment) -> tuple[str, str, str]:
    found = ID3(io.BytesIO(file.data))
    return found["TIT2"].text[0], found["TALB"].text[0], found["TRCK"].text[0]


def messages(files: list[StoredAttachment]) -> list[list[StoredAttachment]]:
    """The files grouped by the message that carries them, in upload order."""
    grouped: dict[int, list[StoredAttachment]] = {}
    for file in files:
        grouped.setdefault(file.message_id, []).append(file)
    return list(grouped.values())


def slow_feed(media: MediaServer, count: int) -> str:
    """A feed whose first entry downloads slowest (about 8 s): the others are ready by then and go together."""
    slow = media.url("/slow/8000/opus.webm", n=uuid.uuid4().hex)
    return media.url("/feed", count=str(count), first=slow, n=uuid.uuid4().hex)


def test_a_feed_arrives_as_files_in_feed_order(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    token = fake.slash_command("mp3", {"url": slow_feed(media, 3)}, user_id=user, channel_id=channel)
    running = wait_original(fake, token, r"💿 .*A feed.*of 3 done", timeout=30)
    assert any(c["custom_id"].startswith("cancel:") for row in running["components"] for c in row["components"])
    files = wait_files(fake, count=3, token=token)
    assert [tags(f) for f in files] == [
        ("Episode 1", "A feed", "1/3"), ("Episode 2", "A feed", "2/3"), ("Episode 3", "A feed", "3/3")]
    [together] = messages(files)  # the first finished last: all three in one message, in order
    lines = plain(together[0].content).splitlines()
    assert [line.split(" <")[0] for line in lines] == ["**Episode 1**", "**Episode 2**", "**Episode 3**"]
    wait_original(fake, token, r"✅ .*A feed.*3 tracks delivered", timeout=15)


def test_tracks_over_the_upload_limit_together_are_split(fake: FakeDiscord, bot: BotProcess,
                                                         media: MediaServer) -> None:
    limit = 450_000  # an 8 s track at 192 kbit/s is about 193 kB: two fit in a message, three do not
    token = fake.slash_command("mp3", {"url": slow_feed(media, 5)}, user_id=new_id(), channel_id=new_id(),
                               attachment_size_limit=limit)
    files = wait_files(fake, count=5, token=token)
    wait_original(fake, token, r"✅ .*5 tracks delivered", timeout=30)
    assert [tags(f)[2] for f in files] == [f"{n}/5" for n in range(1, 6)]
    assert all(limit / 3 < f.size <= limit / 2 for f in files), [f.size for f in files]
    grouped = messages(files)
    assert [len(m) for m in grouped] == [2, 2, 1]
    assert all(sum(f.size for f in m) <= limit for m in grouped)


def test_tracks_option_picks_entries(fake: FakeDiscord, bot: BotProcess, media: MediaServer) -> None:
    channel, user = new_id(), new_id()
    url = media.url("/feed", count="5", n=uuid.uuid4().hex)
    token = fake.slash_command("mp3", {"url": url, "tracks": "2-3"}, user_id=user, channel_id=channel)
    files = wait_files(fake, count=2, token=token)
    assert [tags(f) for f in files] == [("Episode 2", "A feed", "1/2"), ("Episode 3", "A feed", "2/2")]
    wait_original(fake, token, r"✅ .*2 tracks delivered", timeout=30)
    assert len(fake.attachments(token=token)) == 2


@pytest.mark.parametrize("tracks", ["two", "5-2", "0-3", "1:30-4:05"])
def test_malformed_tracks_are_refused(fake: FakeDiscord, bot: BotProcess, media: MediaServer, tracks: str) -> None:
    url = media.url("/feed", count="3", n=uuid.uuid4().hex)
    token = fake.slash_command("mp3", {"url": url, "tracks": tracks}, user_id=new_id(), channel_id=new_id())
    answer = fake.wait_for(lambda: fake.original(token), what="an answer")
    assert answer["flags"] & EPHEMERAL and "as tracks" in answer["content"] and "2-5" in answer["content"]
    assert fake.interaction(token)["callback_types"] == [4]  # refused at once: never deferred, no job
