"""Smoke test: a real discord.py client against the fake Discord server."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import discord
import pytest
from discord.ext import commands

from tests.fake_discord import FakeDiscord

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
GUILD_ID = 900
CHANNEL_ID = 901
USER_ID = 4242
FILE_BYTES = b"ID3 fake mp3 bytes \x00\x01\x02"


class PingView(discord.ui.View):
    """One button whose click edits the message."""

    @discord.ui.button(label="Again", custom_id="ping:again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[PingView]) -> None:
        """Replace the message text and drop the buttons (callback type 7)."""
        await interaction.response.edit_message(content="clicked", view=None)


class PingBot(commands.Bot):
    """A minimal bot: /ping defers, edits the original, sends a followup file."""

    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.seen: dict[str, discord.Interaction] = {}
        self.ready = threading.Event()
        guild = discord.Object(GUILD_ID)

        @self.tree.command(name="ping", description="Ping the bot", guild=guild)
        async def ping(interaction: discord.Interaction) -> None:
            self.seen[interaction.token] = interaction
            await interaction.response.defer()
            await interaction.edit_original_response(content="pong", view=PingView(timeout=None))
            await interaction.followup.send("here is a file", file=discord.File(io.BytesIO(FILE_BYTES), "ping.mp3"))

    async def setup_hook(self) -> None:
        """Sync the guild command like the real bot will."""
        await self.tree.sync(guild=discord.Object(GUILD_ID))

    async def on_ready(self) -> None:
        """Signal the test thread."""
        self.ready.set()


class ClientThread:
    """Runs a discord.py client on its own event loop in a background thread."""

    def __init__(self, factory: Callable[[], discord.Client]) -> None:
        self._factory = factory
        self.loop = asyncio.new_event_loop()
        self.client: discord.Client | None = None
        self.error: BaseException | None = None
        self._stopping = asyncio.Event()
        self._created = threading.Event()
        self._thread = threading.Thread(target=self._main, name="discord-client", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.client = self._factory()
        self._created.set()
        try:
            self.loop.run_until_complete(self._amain(self.client))
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    async def _amain(self, client: discord.Client) -> None:
        task = asyncio.create_task(client.start("fake-token"))
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        await client.close()
        stop.cancel()
        await task

    def start(self) -> discord.Client:
        """Start the thread; return the client once constructed."""
        self._thread.start()
        assert self._created.wait(5)
        assert self.client is not None
        return self.client

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the client's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Close the client and join the thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "discord client thread did not stop"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    server = FakeDiscord(guild_id=GUILD_ID, channel_id=CHANNEL_ID, token="fake-token")
    with server, server.patch_discord_py():
        yield server


@pytest.fixture(scope="module")
def bot(fake: FakeDiscord) -> Iterator[tuple[PingBot, ClientThread]]:
    runner = ClientThread(PingBot)
    client = runner.start()
    assert isinstance(client, PingBot)
    if not client.ready.wait(10):
        raise AssertionError(f"bot not ready (error: {runner.error!r})\n{fake.dump()}")
    yield client, runner
    runner.stop()


def test_login_sync_and_gateway(fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    client, _ = bot
    assert fake.calls("GET", r"^/users/@me$")[0].status == 200
    assert fake.calls("GET", r"^/oauth2/applications/@me$")[0].status == 200
    (cmd,) = fake.commands
    assert (cmd["name"], cmd["guild_id"], cmd["type"]) == ("ping", str(GUILD_ID), 1)
    assert fake.identifies[0]["intents"] == discord.Intents.default().value
    # discord.py asks for zlib-stream but reads the fake's text frames as plain JSON
    assert fake.gateway_connects[0]["compress"] in ("zlib-stream", "zstd-stream")
    assert client.get_channel(CHANNEL_ID) is not None


def test_ping_defer_edit_followup_and_button(fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    token = fake.slash_command("ping", {}, user_id=USER_ID)
    fake.wait_for(lambda: len(fake.followups(token)) == 1, what="followup")

    info = fake.interaction(token)
    assert info["callback_types"] == [5]
    assert info["callback_times"][0] - info["created"] < 3.0
    original = fake.original(token)
    assert original is not None
    assert original["content"] == "pong" and not original["flags"] & 128
    button = original["components"][0]["components"][0]
    assert (button["type"], button["custom_id"]) == (2, "ping:again")

    (followup,) = fake.followups(token)
    assert followup["content"] == "here is a file"
    assert [(a["filename"], a["size"]) for a in followup["attachments"]] == [("ping.mp3", len(FILE_BYTES))]
    (stored,) = fake.attachments(token=token)
    assert (stored.filename, stored.data, stored.content) == ("ping.mp3", FILE_BYTES, "here is a file")
    assert stored.message_id == int(followup["id"])

    click = fake.component_click(original["id"], "ping:again", user_id=USER_ID)
    fake.wait_for(lambda: fake.callback_type(click) == 7, what="button answered")
    edited = fake.message(original["id"])
    assert edited["content"] == "clicked" and edited["components"] == []


def test_expired_token_is_plain_http_exception(fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    client, runner = bot
    token = fake.slash_command("ping", {}, user_id=USER_ID)
    fake.wait_for(lambda: len(fake.followups(token)) == 1, what="followup")
    fake.expire_interaction(token)
    interaction = client.seen[token]
    with pytest.raises(discord.HTTPException) as info:
        runner.run(interaction.edit_original_response(content="late"))
    assert type(info.value) is discord.HTTPException
    assert (info.value.status, info.value.code) == (401, 50027)
    with pytest.raises(discord.HTTPException) as info:
        runner.run(interaction.followup.send("late"))
    assert (type(info.value), info.value.status) == (discord.HTTPException, 401)


def test_deleted_channel_is_unknown_to_the_bot_and_its_interactions(
        fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    client, runner = bot
    channel_id = 7_000 + uuid.uuid4().int % 1_000
    token = fake.slash_command("ping", {}, user_id=USER_ID, channel_id=channel_id)
    fake.wait_for(lambda: len(fake.followups(token)) == 1, what="followup")
    fake.delete_channel(channel_id)
    interaction = client.seen[token]
    for call in (interaction.edit_original_response(content="late"), interaction.followup.send("late"),
                 client.get_partial_messageable(channel_id).send("hello")):
        with pytest.raises(discord.NotFound) as gone:
            runner.run(call)
        assert gone.value.code == 10003
    assert not fake.channel_messages(channel_id)


def test_channel_errors_and_rate_limit(fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    client, runner = bot
    channel = client.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)

    fake.block_channel(CHANNEL_ID)
    with pytest.raises(discord.Forbidden) as forbidden:
        runner.run(channel.send("hello"))
    assert forbidden.value.code == 50001
    fake.unblock_channel(CHANNEL_ID)

    old_limit, fake.max_upload = fake.max_upload, 16
    try:
        with pytest.raises(discord.HTTPException) as too_big:
            runner.run(channel.send(file=discord.File(io.BytesIO(b"x" * 17), "big.mp3")))
    finally:
        fake.max_upload = old_limit
    assert (type(too_big.value), too_big.value.status, too_big.value.code) == (discord.HTTPException, 413, 40005)

    with pytest.raises(discord.NotFound) as missing:
        runner.run(client.fetch_channel(123456))
    assert missing.value.code == 10003

    before = fake.count_429
    fake.force_rate_limit(rf"^/channels/{CHANNEL_ID}/messages$", retry_after=0.05)
    sent = runner.run(channel.send("after 429"))
    assert fake.count_429 == before + 1
    assert fake.channel_messages(CHANNEL_ID)[-1]["id"] == str(sent.id)


def test_unknown_route_is_json_404(fake: FakeDiscord) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{fake.api_url}/no/such/route", timeout=5)
    assert info.value.code == 404
    assert info.value.headers["Content-Type"] == "application/json"
    assert json.loads(info.value.read()) == {"message": "404: Not Found", "code": 0}
    assert fake.calls(path=r"^/no/such/route$")[0].status == 404


def test_zlib_stream_gateway(fake: FakeDiscord) -> None:
    ready = threading.Event()

    def factory() -> discord.Client:
        client = discord.Client(intents=discord.Intents.none(), guild_ready_timeout=0.05)
        client.event(_ready_setter(ready))
        return client

    with FakeDiscord(zlib_stream=True) as zfake, zfake.patch_discord_py():
        runner = ClientThread(factory)
        runner.start()
        try:
            assert ready.wait(10), zfake.dump()
            if zfake.gateway_connects[0].get("compress") == "zlib-stream":
                assert runner.client is not None and runner.client.get_guild(zfake.guild_id) is not None
        finally:
            runner.stop()


def _ready_setter(event: threading.Event) -> Callable[[], Coroutine[Any, Any, None]]:
    async def on_ready() -> None:
        event.set()

    return on_ready


def test_lengths_are_refused_as_discord_does(fake: FakeDiscord, bot: tuple[PingBot, ClientThread]) -> None:
    """Content over 2,000 code points and file names over 1,024: 400, code 50035, the field named."""
    client, runner = bot
    channel = client.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    runner.run(channel.send("😀" * 2000))  # code points, not UTF-16 units
    with pytest.raises(discord.HTTPException) as too_long:
        runner.run(channel.send("a" * 2001))
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert "content" in str(too_long.value) and "2000 or fewer" in str(too_long.value)
    for name in ("я" * 1020 + ".mp3", "Tom &amp; _` @x; y=\"z\".mp3"):  # names as sent, quotes and all
        sent = runner.run(channel.send(file=discord.File(io.BytesIO(FILE_BYTES), name)))
        assert fake.attachments(CHANNEL_ID)[-1].filename == sent.attachments[0].filename == name
    with pytest.raises(discord.HTTPException) as long_name:
        runner.run(channel.send(file=discord.File(io.BytesIO(FILE_BYTES), "я" * 1021 + ".mp3")))
    assert (long_name.value.status, long_name.value.code) == (400, 50035)
    assert "attachments.0.filename" in str(long_name.value)


def test_one_message_takes_ten_files_within_the_upload_limit(fake: FakeDiscord,
                                                             bot: tuple[PingBot, ClientThread]) -> None:
    """files[0..9] in one message, in order; an eleventh file (400 50035) or files together over the limit
    (413 40005, though each alone fits) are refused, and nothing of a refused message is kept."""
    client, runner = bot
    channel = client.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)

    def files(count: int, size: int = len(FILE_BYTES)) -> list[discord.File]:
        return [discord.File(io.BytesIO(bytes([n]) * size), f"{n}.mp3") for n in range(count)]

    sent = runner.run(channel.send("ten", files=files(10)))
    assert [a.filename for a in sent.attachments] == [f"{n}.mp3" for n in range(10)]
    stored = [a for a in fake.attachments(CHANNEL_ID) if a.message_id == sent.id]
    assert [a.data[:1] for a in stored] == [bytes([n]) for n in range(10)]
    before = len(fake.attachments(CHANNEL_ID))
    with pytest.raises(discord.HTTPException) as eleven:
        runner.run(channel.send("eleven", files=files(11)))
    assert (eleven.value.status, eleven.value.code) == (400, 50035) and "10 or fewer" in str(eleven.value)
    old_limit, fake.max_upload = fake.max_upload, 100
    try:
        runner.run(channel.send("two that fit", files=files(2, 50)))
        with pytest.raises(discord.HTTPException) as too_big:
            runner.run(channel.send("three that don't", files=files(3, 50)))
    finally:
        fake.max_upload = old_limit
    assert (too_big.value.status, too_big.value.code) == (413, 40005)
    assert len(fake.attachments(CHANNEL_ID)) == before + 2
