"""Fake Telegram Bot API server for end-to-end tests (aiohttp, own thread + loop).

Usage: ``with FakeTelegram() as fake:`` then ``ApplicationBuilder().token(...)
.base_url(fake.api_url).base_file_url(fake.file_url)``; inject with ``push_message`` /
``push_document`` / ``push_callback``; assert with ``calls()``, ``messages()``, ``sent_media()``, ``wait_for()``.

What PTB 22.8 sends: a POST to ``{base_url}{token}/{method}``, form-urlencoded when no file
is attached (strings raw, everything else ``json.dumps``-ed: ints "5", bools "true",
dicts/lists as JSON), multipart otherwise. An uploaded file is a part named after the
parameter (``audio``, ``document``) with *no* form value; a thumbnail is the form value
``attach://attached<hex>`` plus a part of that name. None values are dropped; calls
without parameters (getMe) have an empty body.

Deliberate strictness: a bare ``&`` in HTML is rejected (real Telegram keeps it literally)
so that unescaped user text is caught. MarkdownV2 is not validated.

Limits as Telegram enforces them: a text of more than 4,096 and a caption of more than 1,024
characters after entity parsing is refused ("message is too long", "message caption is too
long"), counted in UTF-16 code units (an emoji outside the BMP counts 2); callback data over
64 bytes is BUTTON_DATA_INVALID.

Rate limits, each a sliding window answered with 429 and ``retry_after`` (and a call before that
time counted in ``early_retries``): ``flood_limit`` calls a second into one chat,
``group_limit`` a minute into one group (negative chat id), ``global_limit`` a second across
all chats; ``flood_429s`` counts them (``limit_429s`` by limit). Faults to inject: ``flood()``
answers every call into a chat 429 for a while (``forced_429s``), ``blocked`` chats answer 403,
``garbled`` chats answer a result no client can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import BodyPartReader, web

from tests.multipart import disposition

log = logging.getLogger(__name__)

BOT_USER = {"id": 1000, "is_bot": True, "first_name": "ytmp3 test", "username": "ytmp3_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False}
NOT_MODIFIED = ("Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message")
FLOOD_METHODS = {"sendMessage", "editMessageText", "editMessageReplyMarkup",
                 "editMessageCaption", "sendAudio", "sendDocument", "sendMediaGroup"}
_JSON = {"reply_markup", "reply_parameters", "entities", "caption_entities", "commands", "scope",
         "allowed_updates", "link_preview_options", "media"}
_INT = {"chat_id", "message_id", "offset", "limit", "duration", "reply_to_message_id",
        "user_id", "cache_time", "message_thread_id", "from_chat_id"}
_BOOL = {"drop_pending_updates", "disable_notification", "protect_content", "show_alert",
         "disable_web_page_preview", "allow_sending_without_reply", "disable_content_type_detection"}
_EXTRA = ("raw_text", "parse_mode", "deleted", "from_bot")  # test-only keys on stored messages
_TAGS = {"b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
         "ins": "underline", "s": "strikethrough", "strike": "strikethrough",
         "del": "strikethrough", "a": "text_link", "code": "code", "pre": "pre",
         "tg-spoiler": "spoiler", "span": "spoiler", "blockquote": "blockquote"}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);")
_ATTR_RE = re.compile(r"\s*([a-zA-Z-]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")
_URL_RE = re.compile(
    r"(?:\b(?:https?|ftp)://[^\s<>\"]+"
    r"|\b(?:[a-z0-9-]+\.)+(?:com|org|net|be|io|ru|de|uk|tv|me|co|ly|gl|gg|app|dev|info|fm|to)"
    r"\b(?:/[^\s<>\"]*)?)", re.IGNORECASE)
_CMD_RE = re.compile(r"(?<![\w/@.])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/])")
_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
            "upload_voice", "upload_document", "choose_sticker", "find_location",
            "record_video_note", "upload_video_note"}


class ApiError(Exception):
    """A Telegram error answer: HTTP status, description and optional parameters."""

    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def bad(description: str) -> ApiError:
    """400 Bad Request with Telegram's prefix."""
    return ApiError(400, "Bad Request: " + description)


def u16(s: str) -> int:
    """Length of ``s`` in UTF-16 code units (Telegram entity offsets)."""
    return len(s.encode("utf-16-le")) // 2


class _Html:
    """Telegram-HTML parser producing plain text and entities (mirrors tdlib's errors)."""

    def __init__(self, src: str, strict_amp: bool) -> None:
        self.src, self.strict_amp = src, strict_amp
        self.out: list[str] = []
        self.pos = 0  # UTF-16 length of the output so far
        self.stack: list[tuple[str, dict, int]] = []
        self.ents: list[dict] = []

    def fail(self, msg: str, at: int | None = None) -> ApiError:
        where = f" at byte offset {len(self.src[:at].encode())}" if at is not None else ""
        return bad(f"can't parse entities: {msg}{where}")

    def emit(self, ch: str) -> None:
        self.out.append(ch)
        self.pos += u16(ch)

    def parse(self) -> tuple[str, list[dict]]:
        i = 0
        while i < len(self.src):
            c = self.src[i]
            if c == "&":
                i = self.entity(i)
            elif c == "<":
                i = self.tag(i)
            else:
                self.emit(c)
                i += 1
        if self.stack:
            raise self.fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"')
        self.ents.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.out), self.ents

    def entity(self, i: int) -> int:
        m = _ENTITY_RE.match(self.src, i)
        name = m.group(1) if m else ""
        if m and name.startswith("#"):
            code = int("0" + name[1:].lower(), 0) if name[1] in "xX" else int(name[1:])
            if not 0 < code < 0x110000:
                raise self.fail("Invalid numeric HTML entity", i)
            self.emit(chr(code))
        elif m and name in _NAMED:
            self.emit(_NAMED[name])
        elif self.strict_amp:  # real Telegram keeps a bare '&' literally
            raise self.fail("Character '&' must be escaped as '&amp;'", i)
        else:
            self.emit("&")
            return i + 1
        return m.end()

    def tag(self, start: int) -> int:
        src, close = self.src, self.src.startswith("</", start)
        k = j = start + (2 if close else 1)
        while k < len(src) and not src[k].isspace() and src[k] != ">":
            k += 1
        tag, end = src[j:k].lower(), src.find(">", k)
        if k >= len(src):
            raise self.fail(f"Unclosed {'end' if close else 'start'} tag", start)
        if not close and tag not in _TAGS:
            raise self.fail(f'Unsupported start tag "{tag}"', start)
        if end < 0:
            raise self.fail(f"Unclosed {'end' if close else 'start'} tag", start)
        if close:
            self.end_tag(tag, start)
        else:
            self.start_tag(tag, src[k:end], start)
        return end + 1

    def end_tag(self, tag: str, at: int) -> None:
        if not self.stack:
            raise self.fail("Unexpected end tag", at)
        top, ent, off = self.stack.pop()
        if top != tag:
            raise self.fail(f'Unmatched end tag at byte offset {len(self.src[:at].encode())}, '
                            f'expected "</{top}>", found "</{tag}>"')
        if self.pos > off and ent["type"]:
            self.ents.append({**ent, "offset": off, "length": self.pos - off})

    def start_tag(self, tag: str, attr_text: str, at: int) -> None:
        attrs = {a.lower(): (v or "").strip("\"'") for a, v in _ATTR_RE.findall(attr_text)}
        ent: dict[str, Any] = {"type": _TAGS[tag]}
        if tag == "a":
            ent["url"] = attrs.get("href", "")
        elif tag == "span" and attrs.get("class") != "tg-spoiler":
            raise self.fail('Tag "span" must have class "tg-spoiler"', at)
        elif tag == "blockquote" and "expandable" in attrs:
            ent["type"] = "expandable_blockquote"
        elif tag == "code" and self.stack and self.stack[-1][0] == "pre" and attrs.get("class"):
            self.stack[-1][1]["language"] = attrs["class"].removeprefix("language-")
            ent["type"] = None  # tdlib folds <pre><code class=...> into one pre entity
        self.stack.append((tag, ent, self.pos))


def parse_html(src: str, strict_amp: bool = True) -> tuple[str, list[dict]]:
    """Parse Telegram-HTML into (plain text, entities); raise ApiError like Telegram does."""
    return _Html(src, strict_amp).parse()


def detect_entities(text: str) -> list[dict]:
    """url and bot_command entities as Telegram computes them for user messages."""
    ents: list[tuple[int, int, str]] = []
    for m in _URL_RE.finditer(text):
        url = m.group(0).rstrip(".,;:!?)'\"")
        ents.append((m.start(), m.start() + len(url), "url"))
    for m in _CMD_RE.finditer(text):
        if not any(s <= m.start() < e for s, e, _ in ents):
            ents.append((m.start(), m.end(), "bot_command"))
    return [{"type": t, "offset": u16(text[:s]), "length": u16(text[s:e])}
            for s, e, t in sorted(ents)]


def _check_keyboard(markup: dict) -> None:
    """Callback data is 1-64 bytes, as Telegram refuses otherwise."""
    for row in markup["inline_keyboard"]:
        for button in row:
            if "callback_data" in button and not 1 <= len(button["callback_data"].encode()) <= 64:
                raise bad("BUTTON_DATA_INVALID")


@dataclass(frozen=True)
class Call:
    """One request received by the fake."""

    time: float
    method: str
    chat_id: int | str | None
    params: dict
    status: int
    response: Any
    token: str


class FakeTelegram:
    """Fake Bot API server in a background thread; all accessors are thread-safe."""

    def __init__(self, flood_limit: int | None = 3, retry_after: int = 1,
                 upload_limit: int = 50 * 1024 * 1024, strict_html: bool = True, token: str | None = None,
                 group_limit: int | None = None, global_limit: int | None = None) -> None:
        self.flood_limit, self.retry_after = flood_limit, retry_after
        self.token = token  # None accepts any bot token; else others get 401 Unauthorized, as the Bot API answers
        # Telegram's other limits, off unless asked for: calls per minute into one group (20),
        # calls per second across all chats (30).
        self.group_limit, self.global_limit = group_limit, global_limit
        self.limit_429s: dict[str, int] = defaultdict(int)  # unforced 429s by limit: chat, group, global
        self.forced_429s = 0  # answered to a chat under flood()
        self.blocked: set[int] = set()  # chats whose user blocked the bot: every call answers 403
        self.garbled: set[int] = set()  # chats whose calls answer 200 with a result no client can read
        self.late: dict[int, float] = {}  # chats whose calls are answered this many seconds after they took effect
        self.upload_limit, self.strict_html = upload_limit, strict_html
        self.bot_user = dict(BOT_USER)
        self.no_delete_rights: set[int] = set()  # chats where the bot may not delete others' messages
        self.tokens: set[str] = set()
        self.flood_429s = 0
        self.early_retries = 0
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._chats: dict[int, dict] = {}
        self._msgs: dict[tuple[int, int], dict] = {}
        self._next_mid: dict[int, int] = defaultdict(int)
        self._updates: list[dict] = []
        self._next_update = 1
        self._callbacks: dict[str, dict] = {}
        self._files: dict[str, dict] = {}
        self._paths: dict[str, str] = {}
        self._sent_media: list[dict] = []
        self._commands: dict[str, list] = {}
        self._hits: dict[Any, deque] = defaultdict(deque)
        self._group_hits: dict[Any, deque] = defaultdict(deque)
        self._all_hits: deque = deque()
        self._blocked: dict[Any, float] = {}
        self._floods: dict[Any, tuple[float, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self.port = 0

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeTelegram:
        """Start the server thread; returns self once it listens."""
        ready, err = threading.Event(), []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._setup())
            except OSError as exc:  # pragma: no cover - startup failure
                err.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    async def _setup(self) -> None:
        self._wake = asyncio.Event()
        app = web.Application(client_max_size=self.upload_limit + (1 << 20))
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._serve_file)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Wake pending long polls and stop the server thread."""
        if not self._thread or not self._loop:
            return
        self._closing = True
        self._loop.call_soon_threadsafe(self._wake.set)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """Value for ``ApplicationBuilder().base_url(...)``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_url(self) -> str:
        """Value for ``ApplicationBuilder().base_file_url(...)``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ---------------------------------------------------------------- test-side accessors
    def calls(self, method: str | None = None, chat_id: int | None = None) -> list[Call]:
        """Logged calls, optionally filtered by method and chat."""
        with self._lock:
            return [c for c in self._calls if (method is None or c.method == method)
                    and (chat_id is None or c.chat_id == chat_id)]

    def clear(self) -> None:
        """Forget the call log and the flood counters (messages and files stay)."""
        with self._lock:
            self._calls.clear()
            self._hits.clear()
            self._group_hits.clear()
            self._all_hits.clear()
            self._blocked.clear()
            self.limit_429s.clear()
            self.flood_429s = self.early_retries = self.forced_429s = 0

    def flood(self, chat_id: int, seconds: float, retry_after: int = 5) -> None:
        """From now on for `seconds`, every call into the chat is answered 429 with this retry_after."""
        with self._lock:
            self._floods[chat_id] = (time.monotonic() + seconds, retry_after)

    def message(self, chat_id: int, message_id: int, include_deleted: bool = False) -> dict | None:
        """Current state of a message (Telegram dict + raw_text/parse_mode/deleted/from_bot)."""
        with self._lock:
            rec = self._msgs.get((chat_id, message_id))
            if rec is None or (rec["deleted"] and not include_deleted):
                return None
            return copy.deepcopy(rec)

    def messages(self, chat_id: int, include_deleted: bool = False) -> list[dict]:
        """Messages the bot sent to a chat, oldest first, in their current state."""
        with self._lock:
            return [copy.deepcopy(r) for (c, _), r in sorted(self._msgs.items())
                    if c == chat_id and r["from_bot"] and (include_deleted or not r["deleted"])]

    def file(self, file_id: str) -> dict | None:
        """Stored file record (data, filename, mime_type, title, performer, thumbnail...)."""
        with self._lock:
            return dict(self._files[file_id]) if file_id in self._files else None

    def sent_media(self, method: str | None = None) -> list[dict]:
        """Every successful sendAudio/sendDocument: all fields, ``uploaded`` False for file_id."""
        with self._lock:
            return [dict(r) for r in self._sent_media if method in (None, r["method"])]

    def pending_updates(self) -> list[dict]:
        """Injected updates the bot has not confirmed yet."""
        with self._lock:
            return copy.deepcopy(self._updates)

    # ---------------------------------------------------------------- injection
    def push_message(self, chat_id: int, user_id: int, text: str, chat_type: str = "private",
                     reply_to_message_id: int | None = None, reply_to_text: str | None = None,
                     username: str | None = "tester", language_code: str = "en") -> int:
        """Inject a user text message (with url/bot_command entities); returns its id. `language_code`: the
        user's app language, as Telegram reports it."""
        with self._cond:
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}",
                    "language_code": language_code, **({"username": username} if username else {})}
            self._ensure_chat(chat_id, chat_type, user)
            fields: dict[str, Any] = {"text": text}
            if ents := detect_entities(text):
                fields["entities"] = ents
            if reply_to_message_id is not None:
                target = self._msgs.get((chat_id, reply_to_message_id))
                reply = self._public(target) if target else {
                    "message_id": reply_to_message_id, "from": self.bot_user,
                    "chat": self._chats[chat_id], "date": int(time.time())}
                if reply_to_text is not None:
                    reply["text"] = reply_to_text
                fields["reply_to_message"] = reply
            rec = self._store(chat_id, user, fields, from_bot=False)
            self._push({"message": self._public(rec)})
            return rec["message_id"]

    def push_document(self, chat_id: int, user_id: int, data: bytes, filename: str = "file.txt",
                      caption: str | None = None, chat_type: str = "private",
                      mime_type: str = "text/plain") -> int:
        """Inject a user message with a document (and a caption, with its entities); returns its id.

        The file is stored like an upload, so ``getFile`` and the file URL serve it back.
        """
        with self._cond:
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "language_code": "en"}
            self._ensure_chat(chat_id, chat_type, user)
            n = len(self._files) + 1
            fid = f"fake-document-{n}-{uuid.uuid4().hex[:10]}"
            obj = {"file_id": fid, "file_unique_id": f"uniqdocument{n}", "file_name": filename,
                   "mime_type": mime_type, "file_size": len(data)}
            self._files[fid] = {**obj, "kind": "document", "data": bytes(data), "thumbnail": None}
            fields: dict[str, Any] = {"document": obj}
            if caption is not None:
                fields["caption"] = caption
                if ents := detect_entities(caption):
                    fields["caption_entities"] = ents
            rec = self._store(chat_id, user, fields, from_bot=False)
            self._push({"message": self._public(rec)})
            return rec["message_id"]

    def push_callback(self, chat_id: int, user_id: int, message_id: int, data: str, language_code: str = "en") -> str:
        """Inject a button press on a bot message; returns the callback query id."""
        with self._cond:
            rec = self._msgs.get((chat_id, message_id))
            if rec is None:
                raise KeyError(f"no message {message_id} in chat {chat_id}")
            qid = f"cb{uuid.uuid4().int % 10**12}"
            user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}",
                    "language_code": language_code}
            self._callbacks[qid] = {"answered": False, "data": data}
            self._push({"callback_query": {"id": qid, "from": user, "message": self._public(rec),
                                           "chat_instance": str(chat_id), "data": data}})
            return qid

    def delete_message(self, chat_id: int, message_id: int) -> None:
        """Simulate the user deleting a message."""
        with self._cond:
            self._msgs[(chat_id, message_id)]["deleted"] = True
            self._cond.notify_all()

    def _push(self, body: dict) -> None:
        self._updates.append({"update_id": self._next_update, **body})
        self._next_update += 1
        self._cond.notify_all()
        if self._loop and self._wake:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---------------------------------------------------------------- waiting
    def wait_for(self, predicate: Callable[[FakeTelegram], Any], timeout: float = 5.0,
                 what: str = "") -> Any:
        """Block until ``predicate(self)`` is truthy and return its value; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate(self)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for "
                                         f"{what or predicate}\n{self.dump()}")
                self._cond.wait(min(remaining, 0.1))
            return result

    def wait_for_call(self, method: str, chat_id: int | None = None, count: int = 1,
                      timeout: float = 5.0) -> Call:
        """Wait until ``count`` calls of ``method`` were made; return the count-th one."""
        calls = self.wait_for(lambda f: len(c := f.calls(method, chat_id)) >= count and c,
                              timeout, f"{count}x {method}")
        return calls[count - 1]

    def dump(self, last: int = 25) -> str:
        """Human-readable tail of the call log (empty getUpdates skipped)."""
        with self._lock:
            calls = [c for c in self._calls if c.method != "getUpdates" or c.response][-last:]
            t0 = calls[0].time if calls else 0.0
            lines = [f"  +{c.time - t0:7.3f}s {c.method} chat={c.chat_id} -> {c.status} "
                     f"{json.dumps(c.params, default=str)[:300]}" for c in calls]
            return "recent calls:\n" + ("\n".join(lines) or "  (none)")

    # ---------------------------------------------------------------- HTTP layer
    async def _handle(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        now = time.monotonic()
        try:
            params, files = await self._parse(request)
        except web.HTTPRequestEntityTooLarge:
            params, files = {}, {}
            status, body = 413, {"ok": False, "error_code": 413,
                                 "description": "Request Entity Too Large"}
        else:
            if self.token is not None and token != self.token:
                status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            elif method.lower() == "getupdates":
                result = await self._get_updates(params)
                status, body = 200, {"ok": True, "result": result}
            else:
                with self._lock:
                    status, body = self._dispatch(method, params, files, now)
        with self._cond:
            self.tokens.add(token)
            chat = params.get("chat_id")
            self._calls.append(Call(now, method, chat, params, status,
                                    body.get("result", body), token))
            self._cond.notify_all()
            late = self.late.get(int(chat)) if str(chat).lstrip("-").isdigit() else None
        if late:
            await asyncio.sleep(late)
        return web.json_response(body, status=status)

    async def _parse(self, request: web.Request) -> tuple[dict, dict]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, dict] = {}
        if request.content_type == "application/json":
            raw.update(await request.json())
        elif request.content_type.startswith("multipart/"):
            await self._read_multipart(request, raw, files)
        elif request.can_read_body:
            raw.update(await request.post())
        params: dict[str, Any] = {}
        for key, val in raw.items():
            if isinstance(val, str) and key in _JSON:
                val = json.loads(val)
            elif isinstance(val, str) and key in _INT and re.fullmatch(r"-?\d+", val):
                val = int(val)
            elif isinstance(val, str) and key in _BOOL:
                val = val.lower() == "true"
            params[key] = val
        for key, f in files.items():  # summary in the log; bytes live in self._files
            if not key.startswith("attached"):
                params[key] = {"filename": f["filename"], "size": len(f["data"])}
        return params, files

    async def _read_multipart(self, request: web.Request, raw: dict, files: dict) -> None:
        """Form fields and files, named by `disposition` (see tests/multipart.py)."""
        budget = self.upload_limit + (1 << 20)
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue
            name, filename = disposition(part.headers.get("Content-Disposition", ""))
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                budget -= len(chunk)
                if budget < 0:
                    raise web.HTTPRequestEntityTooLarge(max_size=self.upload_limit + (1 << 20),
                                                        actual_size=request.content_length or 0)
            if filename is None:
                raw[name] = data.decode()
            else:
                files[name] = {"filename": filename, "content_type": part.headers.get("Content-Type", ""),
                               "data": bytes(data)}

    async def _get_updates(self, p: dict) -> list[dict]:
        offset, limit = p.get("offset", 0), p.get("limit", 100) or 100
        deadline = time.monotonic() + float(p.get("timeout", 0) or 0)
        assert self._wake is not None
        while True:
            self._wake.clear()
            with self._lock:
                if offset < 0:
                    result = self._updates[offset:]
                else:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                    result = self._updates[:limit]
                result = copy.deepcopy(result)
            remaining = deadline - time.monotonic()
            if result or self._closing or remaining <= 0:
                return result
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def _serve_file(self, request: web.Request) -> web.Response:
        with self._lock:
            fid = self._paths.get(request.match_info["path"])
            data = self._files[fid]["data"] if fid else None
        if data is None:
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)
        return web.Response(body=data)

    def _dispatch(self, method: str, p: dict, files: dict, now: float) -> tuple[int, dict]:
        handler = getattr(self, "_m_" + method.lower(), None)
        if handler is None:
            log.warning("fake telegram: unknown method %s %s", method, p)
            return 404, {"ok": False, "error_code": 404,
                         "description": "Not Found: method not found"}
        try:
            chat = p.get("chat_id")
            if chat in self.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            if method in FLOOD_METHODS:
                self._flood_check(chat, now)
            if chat in self.garbled:
                return 200, {"ok": True, "result": {"garbled": True}}
            return 200, {"ok": True, "result": handler(p, files)}
        except ApiError as e:
            body = {"ok": False, "error_code": e.code, "description": e.description}
            if e.parameters:
                body["parameters"] = e.parameters
            return e.code, body

    def _flood_check(self, chat: Any, now: float) -> None:
        until, forced = self._floods.get(chat, (0.0, 0))
        if now < until:
            self.forced_429s += 1
            self._early(chat, now)
            self._blocked[chat] = now + forced
            raise ApiError(429, f"Too Many Requests: retry after {forced}", {"retry_after": forced})
        self._early(chat, now)
        self._limit(chat, now)

    def _early(self, chat: Any, now: float) -> None:
        blocked = self._blocked.get(chat, 0.0)
        if now < blocked:
            self.early_retries += 1
            log.warning("fake telegram: chat %s retried %.2fs before retry_after", chat,
                        blocked - now)
            wait = max(1, math.ceil(blocked - now))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})

    def _limit(self, chat: Any, now: float) -> None:
        """Telegram's three limits, each a sliding window: per chat, per group, across all chats."""
        windows = [("chat", self._hits[chat], self.flood_limit, 1.0),
                   ("global", self._all_hits, self.global_limit, 1.0)]
        if isinstance(chat, int) and chat < 0:
            windows.append(("group", self._group_hits[chat], self.group_limit, 60.0))
        for name, hits, limit, window in windows:
            while hits and hits[0] <= now - window:
                hits.popleft()
            if limit is not None and len(hits) >= limit:
                wait = self.retry_after if name == "chat" else max(1, math.ceil(hits[0] + window - now))
                self.flood_429s += 1
                self.limit_429s[name] += 1
                self._blocked[chat] = now + wait
                log.warning("fake telegram: %s limit hit by chat %s", name, chat)
                raise ApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        for _, hits, _, _ in windows:
            hits.append(now)

    # ---------------------------------------------------------------- state helpers
    def _ensure_chat(self, chat_id: int, chat_type: str = "", user: dict | None = None) -> dict:
        if chat_id not in self._chats:
            chat_type = chat_type or ("private" if chat_id > 0 else "group")
            chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
            if chat_type == "private":
                chat["first_name"] = (user or {}).get("first_name", f"User{chat_id}")
                if user and user.get("username"):
                    chat["username"] = user["username"]
            else:
                chat["title"] = f"Chat {chat_id}"
            self._chats[chat_id] = chat
        return self._chats[chat_id]

    def _store(self, chat_id: int, sender: dict, fields: dict, from_bot: bool = True,
               raw_text: str | None = None, parse_mode: str | None = None) -> dict:
        self._next_mid[chat_id] += 1
        rec = {"message_id": self._next_mid[chat_id], "from": sender,
               "chat": self._ensure_chat(chat_id), "date": int(time.time()), **fields,
               "raw_text": raw_text, "parse_mode": parse_mode, "deleted": False,
               "from_bot": from_bot}
        self._msgs[(chat_id, rec["message_id"])] = rec
        return rec

    @staticmethod
    def _public(rec: dict) -> dict:
        return copy.deepcopy({k: v for k, v in rec.items() if k not in _EXTRA})

    def _chat_id(self, p: dict) -> int:
        chat = p.get("chat_id")
        if not isinstance(chat, int):
            raise bad("chat not found")
        self._ensure_chat(chat)
        return chat

    def _formatted(self, p: dict, key: str, limit: int) -> tuple[str, list[dict]]:
        raw = p.get(key, "")
        if p.get("parse_mode", "").lower() == "html":
            text, ents = parse_html(raw, self.strict_html)
        else:
            text, ents = raw, p.get("entities" if key == "text" else "caption_entities") or []
        if u16(text) > limit:  # counted on the parsed text, in UTF-16 code units like entity offsets
            raise bad("message caption is too long" if key == "caption" else "message is too long")
        return text, ents

    def _text(self, p: dict) -> tuple[str, list[dict]]:
        text, ents = self._formatted(p, "text", 4096)
        if not text.strip():
            raise bad("message text is empty")
        return text, ents

    def _common(self, chat_id: int, p: dict, fields: dict) -> dict:
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            _check_keyboard(markup)
            fields["reply_markup"] = markup
        rp = p.get("reply_parameters") or ({"message_id": p["reply_to_message_id"]}
                                           if "reply_to_message_id" in p else None)
        if rp:
            target = self._msgs.get((rp.get("chat_id", chat_id), rp["message_id"]))
            if target and not target["deleted"]:
                fields["reply_to_message"] = self._public(target)
            elif not rp.get("allow_sending_without_reply") and not p.get(
                    "allow_sending_without_reply"):
                raise bad("message to be replied not found")
        return fields

    def _target(self, p: dict, verb: str) -> dict:
        rec = self._msgs.get((p.get("chat_id"), p.get("message_id")))  # type: ignore[arg-type]
        if rec is None or rec["deleted"]:
            raise bad(f"message to {verb} not found")
        if verb == "edit" and not rec["from_bot"]:
            raise bad("message can't be edited")
        return rec

    # ---------------------------------------------------------------- API methods
    def _m_getme(self, p: dict, f: dict) -> dict:
        return dict(self.bot_user)

    def _m_deletewebhook(self, p: dict, f: dict) -> bool:
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_getwebhookinfo(self, p: dict, f: dict) -> dict:
        return {"url": "", "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}

    def _m_setmycommands(self, p: dict, f: dict) -> bool:
        key = json.dumps([p.get("scope"), p.get("language_code")])
        self._commands[key] = p.get("commands", [])
        return True

    def _m_getmycommands(self, p: dict, f: dict) -> list:
        return self._commands.get(json.dumps([p.get("scope"), p.get("language_code")]), [])

    def _m_deletemycommands(self, p: dict, f: dict) -> bool:
        self._commands.pop(json.dumps([p.get("scope"), p.get("language_code")]), None)
        return True

    def _m_sendmessage(self, p: dict, f: dict) -> dict:
        chat = self._chat_id(p)
        text, ents = self._text(p)
        fields = self._common(chat, p, {"text": text, **({"entities": ents} if ents else {})})
        rec = self._store(chat, self.bot_user, fields, True, p.get("text"), p.get("parse_mode"))
        return self._public(rec)

    def _edit(self, p: dict, key: str) -> dict | bool:
        if "inline_message_id" in p:
            return True
        rec = self._target(p, "edit")
        new: dict[str, Any] = {"reply_markup": p.get("reply_markup")}  # omitted = removed
        if key != "reply_markup":
            if key not in rec and (key == "text" or "text" in rec):
                raise bad(f"there is no {key} in the message to edit")
            text, ents = self._text(p) if key == "text" else self._formatted(p, key, 1024)
            new.update({key: text, ("entities" if key == "text" else "caption_entities"): ents})
        if all((rec.get(k) or None) == (v or None) for k, v in new.items()):
            raise bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        for k, v in new.items():
            if v:
                rec[k] = v
            else:
                rec.pop(k, None)
        if key != "reply_markup":
            rec["raw_text"], rec["parse_mode"] = p.get(key), p.get("parse_mode")
        rec["edit_date"] = int(time.time())
        return self._public(rec)

    def _m_editmessagetext(self, p: dict, f: dict) -> dict | bool:
        return self._edit(p, "text")

    def _m_editmessagecaption(self, p: dict, f: dict) -> dict | bool:
        return self._edit(p, "caption")

    def _m_editmessagereplymarkup(self, p: dict, f: dict) -> dict | bool:
        return self._edit(p, "reply_markup")

    def _m_deletemessage(self, p: dict, f: dict) -> bool:
        rec = self._target(p, "delete")
        if not rec["from_bot"] and rec["chat"]["id"] in self.no_delete_rights:
            raise bad("message can't be deleted")
        rec["deleted"] = True
        return True

    def _send_media(self, kind: str, p: dict, files: dict) -> dict:
        chat = self._chat_id(p)
        caption, cents = self._formatted(p, "caption", 1024)
        src = p.get(kind)
        upload = files.get(src[9:]) if isinstance(src, str) and src.startswith("attach://") \
            else files.get(kind)
        if upload is not None:
            if len(upload["data"]) > self.upload_limit:
                raise ApiError(413, "Request Entity Too Large")
            if not upload["data"]:
                raise bad("file must be non-empty")
            thumb = p.get("thumbnail")
            thumb = files.get(thumb[9:]) if isinstance(thumb, str) and thumb.startswith(
                "attach://") else None
            n = len(self._files) + 1
            fid = f"fake-{kind}-{n}-{uuid.uuid4().hex[:10]}"
            obj: dict[str, Any] = {"file_id": fid, "file_unique_id": f"uniq{kind}{n}",
                                   "file_name": upload["filename"],
                                   "mime_type": upload["content_type"],
                                   "file_size": len(upload["data"])}
            if kind == "audio":
                obj["duration"] = int(p.get("duration") or 0)
                obj.update({k: p[k] for k in ("title", "performer") if k in p})
            if thumb:
                obj["thumbnail"] = {"file_id": fid + "-thumb", "file_unique_id": f"thumb{n}",
                                    "width": 320, "height": 320, "file_size": len(thumb["data"])}
            self._files[fid] = {**obj, "kind": kind, "data": upload["data"],
                                "thumbnail": thumb["data"] if thumb else None}
        elif isinstance(src, str) and src in self._files:
            if self._files[src]["kind"] != kind:
                raise bad("type of file mismatch")
            fid = src
            obj = {k: v for k, v in self._files[src].items()
                   if k not in ("kind", "data", "thumbnail")}
            if self._files[src]["thumbnail"] is not None:
                obj["thumbnail"] = {"file_id": src + "-thumb", "file_unique_id": f"t{src}",
                                    "width": 320, "height": 320}
        else:
            raise bad("wrong file identifier/HTTP URL specified")
        fields = {kind: obj, **({"caption": caption} if caption else {}),
                  **({"caption_entities": cents} if cents else {})}
        rec = self._store(chat, self.bot_user, self._common(chat, p, fields), True,
                          p.get("caption"), p.get("parse_mode"))
        self._sent_media.append({
            "method": "sendAudio" if kind == "audio" else "sendDocument", "chat_id": chat,
            "message_id": rec["message_id"], "file_id": fid, "uploaded": upload is not None,
            "data": self._files[fid]["data"], "filename": obj.get("file_name"),
            "thumbnail": self._files[fid]["thumbnail"],
            **{k: p.get(k) for k in ("title", "performer", "duration", "caption", "parse_mode",
                                     "reply_markup")}})
        return self._public(rec)

    def _m_sendmediagroup(self, p: dict, f: dict) -> list:
        """Telegram's rules: 2 to 10 items, an audio only with audios; each item is sent as it would be alone."""
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad("media group must contain 2-10 items" if isinstance(media, list) else "media not found")
        if any(not isinstance(m, dict) or m.get("type") != "audio" for m in media):
            raise bad("can't use the media of the specified type in the album")  # only audios here
        group = uuid.uuid4().hex[:12]
        common = {k: v for k, v in p.items() if k != "media"}
        sent = []
        for item in media:
            one = {**common, **{k: v for k, v in item.items() if k not in ("type", "media")}, "audio": item["media"]}
            message = self._send_media("audio", one, f)
            self._sent_media[-1]["media_group_id"] = group
            sent.append({**message, "media_group_id": group})
        return sent

    def _m_sendaudio(self, p: dict, f: dict) -> dict:
        return self._send_media("audio", p, f)

    def _m_senddocument(self, p: dict, f: dict) -> dict:
        return self._send_media("document", p, f)

    def _m_sendchataction(self, p: dict, f: dict) -> bool:
        self._chat_id(p)
        if p.get("action") not in _ACTIONS:
            raise bad("wrong parameter action in request")
        return True

    def _m_answercallbackquery(self, p: dict, f: dict) -> bool:
        cb = self._callbacks.get(p.get("callback_query_id", ""))
        if cb is None or cb["answered"]:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        cb["answered"] = True
        return True

    def _m_getchat(self, p: dict, f: dict) -> dict:
        chat = self._chats.get(p.get("chat_id"))  # type: ignore[arg-type]
        if chat is None:
            raise bad("chat not found")
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                        "unique_gifts": False, "premium_subscription": False,
                                        "gifts_from_channels": False}}

    def _m_getfile(self, p: dict, f: dict) -> dict:
        rec = self._files.get(p.get("file_id", ""))
        if rec is None:
            raise bad("wrong file_id or the file is temporarily unavailable")
        path = f"{rec['kind']}s/{rec['file_unique_id']}_{rec.get('file_name') or 'file'}"
        self._paths[path] = rec["file_id"]
        return {"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"],
                "file_size": len(rec["data"]), "file_path": path}
