"""Smoke tests: the real python-telegram-bot Application talks to FakeTelegram."""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
import json
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaAudio,
    InputMediaDocument,
    Update,
)
from telegram.error import BadRequest, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fake_telegram import FakeTelegram, detect_entities

pytestmark = pytest.mark.timeout(30)
CHAT, USER = 4242, 77
KB = InlineKeyboardMarkup([[InlineKeyboardButton("again", callback_data="again")]])


class PtbBot:
    """A tiny echo bot run by a real PTB Application in its own thread and loop."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.errors: list[Exception] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.app: Application = (
            ApplicationBuilder().token("123:ABC").base_url(fake.api_url)
            .base_file_url(fake.file_url).build())
        self.app.add_handler(CommandHandler("mp3", self.on_mp3))
        self.app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self.on_text))
        self.app.add_handler(CallbackQueryHandler(self.on_callback))

    async def on_mp3(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Reply with the command arguments."""
        assert update.message
        await update.message.reply_text(f"command: {' '.join(ctx.args or [])}")

    async def on_text(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Echo in bold with a button."""
        assert update.message and update.message.text
        text = f"echo: <b>{html.escape(update.message.text)}</b>"
        await update.message.reply_text(text, parse_mode="HTML", reply_markup=KB)

    async def on_callback(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Edit the message to a fixed text; record Telegram errors."""
        query = update.callback_query
        assert query
        await query.answer()
        try:
            await query.edit_message_text("pressed", reply_markup=KB)
        except BadRequest as exc:
            self.errors.append(exc)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 5) -> Any:
        """Run a coroutine on the bot's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        """Initialise the application and start long polling."""
        self.thread.start()

        async def go() -> None:
            await self.app.initialize()
            await self.app.start()
            assert self.app.updater
            await self.app.updater.start_polling(timeout=10, poll_interval=0)

        self.run(go())

    def stop(self) -> None:
        """Stop polling and shut the application down."""
        async def halt() -> None:
            assert self.app.updater
            await self.app.updater.stop()
            await self.app.stop()
            await self.app.shutdown()

        self.run(halt())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def bot(fake: FakeTelegram) -> Iterator[PtbBot]:
    runner = PtbBot(fake)
    runner.start()
    yield runner
    runner.stop()


def raw_call(fake: FakeTelegram, method: str, **params: Any) -> tuple[int, dict]:
    """POST form-encoded like PTB does, without PTB."""
    data = urllib.parse.urlencode(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}).encode()
    try:
        with urllib.request.urlopen(f"{fake.api_url}T:1/{method}", data, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_echo_command_callback_and_not_modified(fake: FakeTelegram, bot: PtbBot) -> None:
    fake.flood_limit = None
    assert fake.calls("getMe") and fake.calls("deleteWebhook")
    assert fake.tokens == {"123:ABC"}
    fake.push_message(CHAT, USER, "hi <you> & me")
    call = fake.wait_for_call("sendMessage", CHAT)
    assert call.status == 200 and call.params["parse_mode"] == "HTML"
    assert call.params["text"] == "echo: <b>hi &lt;you&gt; &amp; me</b>"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again"
    shown = fake.messages(CHAT)[0]
    assert shown["text"] == "echo: hi <you> & me"
    assert shown["entities"] == [{"type": "bold", "offset": 6, "length": 13}]

    fake.push_message(CHAT, USER, "/mp3 https://youtu.be/abc")
    call = fake.wait_for_call("sendMessage", CHAT, count=2)
    assert call.params["text"] == "command: https://youtu.be/abc"

    mid = shown["message_id"]
    fake.push_callback(CHAT, USER, mid, "again")
    assert fake.wait_for_call("editMessageText", CHAT).status == 200
    assert fake.message(CHAT, mid)["text"] == "pressed"  # type: ignore[index]
    fake.push_callback(CHAT, USER, mid, "again")
    assert fake.wait_for_call("editMessageText", CHAT, count=2).status == 400
    errors = fake.wait_for(lambda f: bot.errors, what="BadRequest in handler")
    assert isinstance(errors[0], BadRequest)
    assert str(errors[0]).startswith("Message is not modified")
    assert [c.status for c in fake.calls("answerCallbackQuery")] == [200, 200]

    fake.delete_message(CHAT, mid)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        bot.run(bot.app.bot.edit_message_text("x", chat_id=CHAT, message_id=mid))


def test_flood_control_raises_retry_after(fake: FakeTelegram, bot: PtbBot,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # retry_after as timedelta, no deprecation
    fake.retry_after = 1
    send = bot.app.bot.send_message
    for i in range(3):
        bot.run(send(CHAT, f"m{i}"))
    with pytest.raises(RetryAfter) as info:
        bot.run(send(CHAT, "too fast"))
    assert info.value.retry_after == dtm.timedelta(seconds=1)
    assert fake.flood_429s == 1 and fake.early_retries == 0
    with pytest.raises(RetryAfter):
        bot.run(send(CHAT, "retry too early"))
    assert fake.early_retries == 1
    time.sleep(1.05)  # honour retry_after
    bot.run(send(CHAT, "after waiting"))
    assert fake.messages(CHAT)[-1]["text"] == "after waiting"
    assert [c.status for c in fake.calls("sendMessage")] == [200, 200, 200, 429, 429, 200]
    fake.flood_limit = None
    for i in range(6):
        bot.run(send(CHAT + 1, f"burst {i}"))
    assert len(fake.messages(CHAT + 1)) == 6


def test_send_audio_upload_and_resend(fake: FakeTelegram, bot: PtbBot, tmp_path: Path) -> None:
    mp3 = tmp_path / "tone.mp3"
    if Path("/usr/bin/ffmpeg").exists():
        subprocess.run(["/usr/bin/ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "sine=duration=1", "-b:a", "64k", str(mp3)], check=True, timeout=20)
    else:
        mp3.write_bytes(b"ID3" + bytes(2000))
    payload = mp3.read_bytes()
    ptb = bot.app.bot
    msg = bot.run(ptb.send_audio(CHAT, payload, filename="tone.mp3", title="Tone",
                                 performer="Sine", duration=1, caption="<b>done</b>",
                                 parse_mode="HTML", thumbnail=b"\xff\xd8jpeg", reply_markup=KB))
    assert msg.audio and msg.audio.title == "Tone" and msg.caption == "done"
    sent = fake.sent_media("sendAudio")[0]
    assert sent["uploaded"] and sent["data"] == payload and sent["filename"] == "tone.mp3"
    assert (sent["title"], sent["performer"], sent["duration"]) == ("Tone", "Sine", 1)
    assert sent["thumbnail"] == b"\xff\xd8jpeg" and sent["caption"] == "<b>done</b>"
    assert fake.calls("sendAudio")[0].params["audio"] == {"filename": "tone.mp3",
                                                          "size": len(payload)}
    file_id = msg.audio.file_id
    again = bot.run(ptb.send_audio(CHAT, file_id, caption="again"))
    assert again.audio.file_id == file_id and again.message_id == msg.message_id + 1
    assert fake.sent_media("sendAudio")[1]["uploaded"] is False
    tg_file = bot.run(ptb.get_file(file_id))
    assert bytes(bot.run(tg_file.download_as_bytearray())) == payload
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        bot.run(ptb.send_audio(CHAT, "no-such-file-id"))
    doc = bot.run(ptb.send_document(CHAT + 1, b"%PDF-1.4", filename="a.pdf"))
    assert doc.document and fake.file(doc.document.file_id)["data"] == b"%PDF-1.4"  # type: ignore[index]


def test_media_group_of_audios_keeps_telegrams_rules(fake: FakeTelegram, bot: PtbBot) -> None:
    ptb = bot.app.bot

    def audio(n: int) -> InputMediaAudio:
        return InputMediaAudio(InputFile(b"ID3" + bytes(500 + n), filename=f"{n}.mp3", attach=True), title=f"T{n}")

    messages = bot.run(ptb.send_media_group(CHAT, [audio(1), audio(2), audio(3)]))
    assert [m.audio.title for m in messages] == ["T1", "T2", "T3"]
    sent = fake.sent_media("sendAudio")[-3:]
    assert [s["filename"] for s in sent] == ["1.mp3", "2.mp3", "3.mp3"]
    assert len({s["media_group_id"] for s in sent}) == 1
    with pytest.raises(BadRequest, match="2-10 items"):
        bot.run(ptb.send_media_group(CHAT, [audio(n) for n in range(11)]))
    with pytest.raises(BadRequest, match="specified type"):
        bot.run(ptb.send_media_group(CHAT, [audio(1), InputMediaDocument(InputFile(b"%PDF", filename="a.pdf",
                                                                                    attach=True))]))


def test_user_document_is_served_back(fake: FakeTelegram, bot: PtbBot) -> None:
    mid = fake.push_document(-200, USER, b"hello file", "notes.txt", caption="/cookies now", chat_type="group")
    message = fake.message(-200, mid)
    assert message is not None and message["caption"] == "/cookies now"
    assert message["caption_entities"] == [{"type": "bot_command", "offset": 0, "length": 8}]
    document = message["document"]
    assert (document["file_name"], document["file_size"]) == ("notes.txt", 10)
    tg_file = bot.run(bot.app.bot.get_file(document["file_id"]))
    assert bytes(bot.run(tg_file.download_as_bytearray())) == b"hello file"
    fake.no_delete_rights.add(-200)
    with pytest.raises(BadRequest, match="Message can't be deleted"):
        bot.run(bot.app.bot.delete_message(-200, mid))
    fake.no_delete_rights.clear()
    assert bot.run(bot.app.bot.delete_message(-200, mid)) is True


def test_misc_methods_via_ptb(fake: FakeTelegram, bot: PtbBot) -> None:
    ptb = bot.app.bot
    fake.push_message(-100, USER, "/mp3@ytmp3_test_bot x", chat_type="supergroup")
    fake.wait_for_call("sendMessage", -100)
    bot.run(ptb.set_my_commands([("mp3", "convert a link")]))
    assert [c.command for c in bot.run(ptb.get_my_commands())] == ["mp3"]
    assert bot.run(ptb.send_chat_action(CHAT, "upload_document")) is True
    chat = bot.run(ptb.get_chat(-100))
    assert chat.type == "supergroup" and chat.title
    msg = bot.run(ptb.send_message(CHAT, "status", reply_markup=KB))
    edited = bot.run(ptb.edit_message_text("done", chat_id=CHAT, message_id=msg.message_id))
    assert edited.reply_markup is None  # Telegram drops the keyboard when it is not re-sent
    with pytest.raises(BadRequest, match="Message is not modified"):
        bot.run(ptb.edit_message_reply_markup(CHAT, msg.message_id, reply_markup=None))
    assert bot.run(ptb.delete_message(CHAT, msg.message_id)) is True
    assert fake.message(CHAT, msg.message_id) is None
    assert fake.message(CHAT, msg.message_id, include_deleted=True)["text"] == "done"  # type: ignore[index]
    with pytest.raises(BadRequest, match="Message to delete not found"):
        bot.run(ptb.delete_message(CHAT, msg.message_id))


def test_raw_protocol_errors_and_long_poll(fake: FakeTelegram) -> None:
    fake.flood_limit = None
    status, body = raw_call(fake, "fooBar")
    assert status == 404 and body["description"] == "Not Found: method not found"
    for text, error in [("<foo>x</foo>", 'Unsupported start tag "foo"'),
                        ("<b>open", "Can't find end tag"), ("a < b", "Unsupported start tag"),
                        ("Tom & Jerry", "'&'"), ("<b>x</i>", "Unmatched end tag")]:
        status, body = raw_call(fake, "sendMessage", chat_id=1, text=text, parse_mode="HTML")
        assert status == 400 and "can't parse entities" in body["description"], text
        assert error in body["description"], body
    status, body = raw_call(fake, "sendMessage", chat_id=1, text="  ")
    assert body["description"] == "Bad Request: message text is empty"
    status, body = raw_call(fake, "sendMessage", chat_id=1, parse_mode="HTML",
                            text='😀 <a href="http://x.y/">l</a> &lt;3 <pre><code '
                                 'class="language-py">x</code></pre>')
    assert status == 200 and body["result"]["text"] == "😀 l <3 x"
    assert body["result"]["entities"] == [
        {"type": "text_link", "url": "http://x.y/", "offset": 3, "length": 1},
        {"type": "pre", "language": "py", "offset": 8, "length": 1}]
    status, body = raw_call(fake, "deleteMessage", chat_id=1, message_id=99)
    assert body["description"] == "Bad Request: message to delete not found"

    started = time.monotonic()
    assert raw_call(fake, "getUpdates", timeout=0.3)[1]["result"] == []
    assert 0.25 < time.monotonic() - started < 2
    threading.Timer(0.2, fake.push_message, (5, 6, "hello")).start()
    started = time.monotonic()
    updates = raw_call(fake, "getUpdates", timeout=5)[1]["result"]
    assert time.monotonic() - started < 2 and updates[0]["message"]["text"] == "hello"
    assert raw_call(fake, "getUpdates", offset=updates[0]["update_id"] + 1)[1]["result"] == []
    assert fake.pending_updates() == []


def test_detect_entities_utf16() -> None:
    assert detect_entities("/mp3@ytmp3_test_bot 😀 https://youtu.be/a?b=1, www.x.com") == [
        {"type": "bot_command", "offset": 0, "length": 19},
        {"type": "url", "offset": 23, "length": 22},
        {"type": "url", "offset": 47, "length": 9}]


def test_lengths_are_counted_as_telegram_does(fake: FakeTelegram, bot: PtbBot) -> None:
    """After entity parsing, in UTF-16 code units: 1,024 for a caption, 4,096 for a text."""
    fake.flood_limit = None
    fits = "<b>" + "😀" * 2048 + "</b>"  # 2,048 code points, 4,096 UTF-16 units once parsed
    assert raw_call(fake, "sendMessage", chat_id=1, text=fits, parse_mode="HTML")[0] == 200
    status, body = raw_call(fake, "sendMessage", chat_id=1, text=fits + "a", parse_mode="HTML")
    assert (status, body["description"]) == (400, "Bad Request: message is too long")
    message = raw_call(fake, "sendMessage", chat_id=1, text="short")[1]["result"]["message_id"]
    status, body = raw_call(fake, "editMessageText", chat_id=1, message_id=message, text="я" * 4097)
    assert (status, body["description"]) == (400, "Bad Request: message is too long")
    ptb, audio, name = bot.app.bot, b"ID3" + bytes(100), "Tom &amp; _` @x; y=z я.mp3"
    sent = bot.run(ptb.send_audio(CHAT, audio, filename=name, caption="&amp;" * 1024, parse_mode="HTML"))
    assert sent.caption == "&" * 1024 and fake.sent_media()[-1]["filename"] == name  # the name as sent
    with pytest.raises(BadRequest, match="Message caption is too long"):
        bot.run(ptb.send_audio(CHAT, audio, filename="a.mp3", caption="😀" * 512 + "a"))
    status, body = raw_call(fake, "sendMessage", chat_id=1, text="x",
                            reply_markup={"inline_keyboard": [[{"text": "b", "callback_data": "x" * 65}]]})
    assert (status, body["description"]) == (400, "Bad Request: BUTTON_DATA_INVALID")
