"""A fake Discord server (REST API + gateway websocket) for end-to-end tests.

``FakeDiscord`` runs an aiohttp server on 127.0.0.1 (random free port) in its
own thread with its own event loop, so plain synchronous pytest tests can drive
it. The real discord.py 2.7.1 client talks to it after two patches (see
``patch_discord_py()``, which applies and restores them)::

    discord.http.Route.BASE = fake.api_url                       # REST, incl. webhooks
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

Facts checked against discord.py 2.7.1 (not guessed):

- ``Route.BASE`` is read when a ``Route`` is built; the interaction webhook
  adapter (``discord/webhook/async_.py``) imports that same ``Route`` class, so
  callbacks (``/interactions/{id}/{token}/callback?with_response=1``) and
  followups/@original edits (``/webhooks/{app}/{token}/...``) follow the patch.
  No separate base exists. Callbacks ask ``with_response=1`` and parse the
  returned ``{"interaction": ..., "resource": ...}`` body, so the fake answers
  200 with that body (204 without the query flag, like Discord).
- A plain ``Client``/``Bot`` never GETs ``/gateway/bot``: it connects to
  ``DEFAULT_GATEWAY`` directly, later reconnects to READY's
  ``resume_gateway_url`` (this fake's own url). ``AutoShardedClient`` does GET
  ``/gateway/bot`` and uses its ``url`` (also this fake's url).
- The client always appends ``?v=10&encoding=json&compress=zlib-stream`` (or
  ``zstd-stream`` when zstandard is installed) but only decompresses *binary*
  frames; text frames are parsed as plain JSON. The fake therefore sends plain
  text frames by default; ``FakeDiscord(zlib_stream=True)`` honours
  ``compress=zlib-stream`` with one shared zlib stream and Z_SYNC_FLUSH frames.
- JSON is parsed by discord.py only when Content-Type is exactly
  ``application/json``; the fake sends exactly that.
- A 429 is retried only when the response carries a ``Via`` header (otherwise
  discord.py assumes a Cloudflare ban and raises), so the fake sends
  ``Via: 1.1 google`` with every 429.
- Errors: 403 -> ``discord.Forbidden``, 404 -> ``discord.NotFound``, anything
  else (401, 400, 413, 429 after 5 tries) -> plain ``discord.HTTPException``.

Discord behaviours simulated: deleted channels (404 10003 for every call about them,
``delete_channel``), 3 s deadline for the first interaction callback
(404 10062 afterwards; ``response_deadline``), double acknowledgement (400
40060), expired interaction tokens (401 50027), channel blocks (403 50001),
DM blocks (403 50007), upload limit for all the files of one request together (413 40005;
``max_upload`` for channels, the interaction's ``attachment_size_limit`` for interaction routes),
multi-file messages (``files[0..9]`` parts, named by ``payload_json``'s ``attachments``, in that order),
empty messages (400 50006), content over 2,000 code points, more than 10 attachments, attachment file
names over 1,024 and custom ids over 100 characters (400 50035 with the field in ``errors``), a command sync
with a name, description, locale or choice Discord would refuse (400 50035: names and their localisations by
Discord's rule and unique among siblings, descriptions up to 100), rate limits (429), missing
MESSAGE_CONTENT intent blanking user messages, disallowed intents (4014).
The first followup after a defer replaces the "thinking..." original (same
id), as on Discord; ``enforce_nonce`` de-duplicates channel sends. Messages
sent by the bot are *not* echoed back as MESSAGE_CREATE events.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import hashlib
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import socket
import threading
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import WSMsgType, web

from tests.multipart import disposition

__all__ = ["Call", "FakeDiscord", "StoredAttachment"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DISCORD_EPOCH_MS = 1420070400000
MiB = 1024 * 1024
MAX_ATTACHMENTS = 10  # files in one message
DEFAULT_USER_ID = 5000

# permission bits
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
DEFAULT_PERMISSIONS = (
    (1 << 6) | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS | (1 << 38)
)
# gateway intents
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | INTENT_MESSAGE_CONTENT
# message flags
FLAG_EPHEMERAL = 64
FLAG_LOADING = 128
EDITABLE_FLAGS = 4 | 4096 | 32768

INVALID_TOKEN = {"message": "Invalid Webhook Token", "code": 50027}
UNKNOWN_WEBHOOK = {"message": "Unknown Webhook", "code": 10015}
UNKNOWN_MESSAGE = {"message": "Unknown Message", "code": 10008}
UNKNOWN_CHANNEL = {"message": "Unknown Channel", "code": 10003}
UNKNOWN_INTERACTION = {"message": "Unknown interaction", "code": 10062}
NOT_FOUND = {"message": "404: Not Found", "code": 0}


@dataclass(frozen=True)
class Call:
    """One REST call as the fake saw it."""

    t: float  # time.monotonic()
    method: str
    path: str  # relative to the API base, e.g. "/channels/901/messages"
    query: dict[str, str]
    json: Any  # parsed JSON body, or payload_json of a multipart body
    files: tuple[tuple[str, str, int], ...]  # (field, filename, size)
    status: int
    response: Any

    def __str__(self) -> str:
        body = json.dumps(self.json)[:160] if self.json is not None else ""
        files = f" files={list(self.files)}" if self.files else ""
        return f"{self.t:.3f} {self.method} {self.path} -> {self.status} {body}{files}"


@dataclass(frozen=True)
class StoredAttachment:
    """An attachment the bot uploaded, with its bytes."""

    id: int
    message_id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str
    content: str  # current content of the message carrying it ("" if deleted)
    interaction_token: str | None

    @property
    def size(self) -> int:
        """Size in bytes."""
        return len(self.data)


class ApiError(Exception):
    """Raised inside a handler to answer with a Discord error body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class _Upload:
    field: str
    filename: str
    data: bytes


@dataclass
class _Req:
    method: str
    path: str
    args: tuple[str, ...]
    query: dict[str, str]
    json: Any
    uploads: list[_Upload]
    auth: str | None


@dataclass
class _Blob:
    id: int
    message_id: int | None
    channel_id: int
    filename: str
    data: bytes
    content_type: str
    token: str | None


@dataclass
class _Interaction:
    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    created: float
    attachment_size_limit: int
    expired: bool = False
    callbacks: list[tuple[float, int]] = field(default_factory=list)
    original_id: int | None = None
    component_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)


@dataclass
class _RateRule:
    pattern: re.Pattern[str]
    method: str | None
    limit: int
    per: float
    retry_after: float
    is_global: bool
    hits: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class _Injected:
    pattern: re.Pattern[str]
    method: str | None
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int


@dataclass(eq=False)
class _GwSession:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    conn: _GwConn | None = None
    sent: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class _GwConn:
    ws: web.WebSocketResponse
    deflate: Any
    lock: asyncio.Lock
    session: _GwSession | None = None


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    if status == 204 or body is None:
        return web.Response(status=204, headers=headers)
    hdrs = dict(headers)
    hdrs["Content-Type"] = "application/json"
    return web.Response(status=status, body=json.dumps(body).encode(), headers=hdrs)


def _max_length(limit: int) -> dict[str, Any]:
    return {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}]}


def _too_long(errors: dict[str, Any]) -> ApiError:
    """Discord's answer to a field over its length: 400, code 50035, the field's path in `errors`."""
    return ApiError(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})


def _check_lengths(msg: dict[str, Any]) -> None:
    """Content, attachments (how many, their file names) and custom ids within Discord's lengths (in code points:
    Discord's API is Python and counts len())."""
    if len(msg["content"]) > 2000:
        raise _too_long({"content": _max_length(2000)})
    if len(msg["attachments"]) > MAX_ATTACHMENTS:
        raise _too_long({"attachments": _max_length(MAX_ATTACHMENTS)})
    for index, attachment in enumerate(msg["attachments"]):
        if len(attachment["filename"]) > 1024:
            raise _too_long({"attachments": {str(index): {"filename": _max_length(1024)}}})
    for row, line in enumerate(msg["components"]):
        for column, component in enumerate(line.get("components", [])):
            if len(component.get("custom_id", "")) > 100:
                raise _too_long({"components": {str(row): {"components": {str(column): {
                    "custom_id": _max_length(100)}}}}})


# Discord's locales (the keys a *_localizations object may have).
LOCALES = frozenset({"id", "da", "de", "en-GB", "en-US", "es-ES", "es-419", "fr", "hr", "it", "lt", "hu", "nl", "no",
                     "pl", "pt-BR", "ro", "fi", "sv-SE", "vi", "tr", "cs", "el", "bg", "ru", "uk", "hi", "th",
                     "zh-CN", "ja", "zh-TW", "ko"})


def _invalid(path: list[str], message: str) -> ApiError:
    errors: dict[str, Any] = {"_errors": [{"code": "INVALID_FORM_BODY", "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return ApiError(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})


def _name_ok(name: Any, chat_input: bool) -> bool:
    """Discord's rule: ^[-_\\p{L}\\p{N}]{1,32}$ in lower case for slash commands and options; a context menu's
    name is 1-32 characters of any kind."""
    if not isinstance(name, str) or not 0 < len(name) <= 32:
        return False
    return not chat_input or (name == name.lower() and all(
        c in "-_" or unicodedata.category(c)[0] in "LN" for c in name))


def _check_named(item: dict[str, Any], path: list[str], chat_input: bool, describe: bool,
                 names: dict[str, set[str]]) -> None:
    """A command's or an option's name and description, with their localisations, as Discord checks them;
    `names` gathers the names used per locale ("" for the default), which must differ among siblings."""
    localized = item.get("name_localizations") or {}
    for locale, name in [("", item.get("name")), *localized.items()]:
        where = [*path, "name_localizations", locale] if locale else [*path, "name"]
        if locale and locale not in LOCALES:
            raise _invalid(where, f"Invalid locale {locale!r}")
        if not _name_ok(name, chat_input):
            raise _invalid(where, f"Invalid name {name!r}")
        if name in names.setdefault(locale, set()):
            raise _invalid(where, f"Name {name!r} is used twice")
        names[locale].add(name)
    descriptions = item.get("description_localizations") or {}
    for locale, text in [("", item.get("description", "")), *descriptions.items()]:
        where = [*path, "description_localizations", locale] if locale else [*path, "description"]
        if locale and locale not in LOCALES:
            raise _invalid(where, f"Invalid locale {locale!r}")
        if not isinstance(text, str) or len(text) > 100 or (describe and not text) or (not describe and text):
            raise _invalid(where, f"Invalid description {text!r}")


def _check_command(body: dict[str, Any], index: int, commands: dict[int, dict[str, set[str]]]) -> None:
    """What a bulk overwrite refuses (400 50035): names, descriptions, locales, options and their choices."""
    chat_input = body.get("type", 1) == 1
    _check_named(body, [str(index)], chat_input, chat_input, commands.setdefault(body.get("type", 1), {}))
    _check_options(body.get("options") or [], [str(index), "options"])


def _check_options(options: list[dict[str, Any]], path: list[str]) -> None:
    names: dict[str, set[str]] = {}
    for i, option in enumerate(options):
        _check_named(option, [*path, str(i)], True, True, names)
        for c, choice in enumerate(option.get("choices") or []):
            for locale, name in [("", choice.get("name")), *(choice.get("name_localizations") or {}).items()]:
                if (locale and locale not in LOCALES) or not isinstance(name, str) or not 0 < len(name) <= 100:
                    raise _invalid([*path, str(i), "choices", str(c)], f"Invalid choice {locale}: {name!r}")
        _check_options(option.get("options") or [], [*path, str(i), "options"])


def _walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for comp in components or []:
        yield comp
        yield from _walk_components(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            yield comp["accessory"]


class FakeDiscord:
    """Fake Discord REST + gateway server on 127.0.0.1 for discord.py tests."""

    def __init__(
        self,
        *,
        guild_id: int = 900,
        channel_id: int = 901,
        bot_id: int = 1000,
        application_id: int | None = None,
        bot_name: str = "ytmp3-bot",
        member_ids: tuple[int, ...] = (DEFAULT_USER_ID,),
        token: str | None = None,
        zlib_stream: bool = False,
        allowed_intents: int | None = None,
        heartbeat_interval: int = 41250,
        response_deadline: float | None = 3.0,
        interaction_ttl: float | None = None,
        max_upload: int = 10 * MiB,
    ) -> None:
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.bot_id = bot_id
        self.application_id = application_id or bot_id
        self.token = token  # None accepts any bot token
        self.zlib_stream = zlib_stream
        self.allowed_intents = allowed_intents  # None allows privileged intents
        self.heartbeat_interval = heartbeat_interval
        self.response_deadline = response_deadline
        self.interaction_ttl = interaction_ttl
        self.max_upload = max_upload
        self.app_permissions = DEFAULT_PERMISSIONS

        self._cond = threading.Condition(threading.RLock())
        self._ids = itertools.count(1)
        self._last_snowflake = 0
        self._calls: list[Call] = []
        self._count_429 = 0
        self._users: dict[int, dict[str, Any]] = {}
        self._bot_user = {
            "id": str(bot_id), "username": bot_name, "discriminator": "0", "global_name": None,
            "avatar": None, "bot": True, "public_flags": 0, "flags": 0, "verified": True,
            "mfa_enabled": False, "email": None, "locale": "en-US", "banner": None, "accent_color": None,
        }
        self._users[bot_id] = self._bot_user
        self._member_ids = [bot_id, *member_ids]
        self._channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self.add_channel(channel_id, "general")
        self._blocked: set[int] = set()
        self._deleted: set[int] = set()
        self._blocked_dm: set[int] = set()
        self._messages: dict[int, dict[str, Any]] = {}
        self._message_token: dict[int, str] = {}
        self._nonces: dict[tuple[str, str], int] = {}
        self._channel_order: dict[int, list[int]] = {}
        self._blobs: dict[int, _Blob] = {}
        self._user_blobs: dict[int, _Blob] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._interactions: dict[str, _Interaction] = {}
        self._rate_rules: list[_RateRule] = []
        self._injected: list[_Injected] = []
        self._identifies: list[dict[str, Any]] = []
        self._gateway_received: list[dict[str, Any]] = []
        self._gateway_connects: list[dict[str, str]] = []
        self._sessions: dict[str, _GwSession] = {}
        self._session: _GwSession | None = None
        self._conns: list[_GwConn] = []
        self._routes = self._build_routes()

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeDiscord:
        """Start the server thread; returns self once listening."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name="fake-discord", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("fake discord did not start")
        if self._start_error is not None:
            raise RuntimeError("fake discord failed to start") from self._start_error
        return self

    def stop(self) -> None:
        """Close websockets, stop the server and join its thread."""
        if self._thread is None or self._loop is None:
            return
        loop = self._loop
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._ashutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeDiscord:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Value for ``DiscordWebSocket.DEFAULT_GATEWAY`` (wrap in ``yarl.URL``)."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py at this fake (both patch points), restoring afterwards."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gw = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gw

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _astart(self) -> None:
        app = web.Application(client_max_size=1024 * MiB)
        app.router.add_route("*", "/api/{tail:.*}", self._handle_api)
        app.router.add_get("/attachments/{channel}/{att}/{filename}", self._handle_cdn)
        for path in ("/", "/gateway", "/gateway/"):
            app.router.add_get(path, self._handle_ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _ashutdown(self) -> None:
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ configuration

    def add_channel(self, channel_id: int, name: str = "channel", guild_id: int | None = None) -> None:
        """Register a guild text channel the bot can post in."""
        with self._cond:
            self._channels[channel_id] = {
                "id": str(channel_id), "type": 0, "guild_id": str(guild_id or self.guild_id), "name": name,
                "position": len(self._channels), "permission_overwrites": [], "nsfw": False,
                "parent_id": None, "topic": None, "last_message_id": None, "rate_limit_per_user": 0,
                "flags": 0,
            }

    def block_channel(self, channel_id: int) -> None:
        """Make /channels/{id}/... answer 403 Missing Access (50001)."""
        with self._cond:
            self._blocked.add(int(channel_id))

    def unblock_channel(self, channel_id: int) -> None:
        """Undo ``block_channel``."""
        with self._cond:
            self._blocked.discard(int(channel_id))

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel and its messages: every call about it, with the bot's token or an interaction's made
        there, answers 404 Unknown Channel (10003)."""
        with self._cond:
            cid = int(channel_id)
            self._channels.pop(cid, None)
            self._deleted.add(cid)
            for mid in self._channel_order.pop(cid, []):
                self._messages.pop(mid, None)
            self._cond.notify_all()

    def block_dm(self, user_id: int) -> None:
        """Make messages to this user's DM channel answer 403 50007."""
        with self._cond:
            self._blocked_dm.add(int(user_id))

    def expire_interaction(self, token: str) -> None:
        """Invalidate an interaction token: its webhook/callback calls get 401 50027."""
        with self._cond:
            self._interaction_state(token).expired = True
            self._cond.notify_all()

    def rate_limit(
        self,
        path_pattern: str,
        limit: int,
        per: float = 1.0,
        *,
        method: str | None = None,
        retry_after: float = 0.5,
        is_global: bool = False,
    ) -> None:
        """Allow ``limit`` requests per ``per`` s on matching paths (regex search), else 429."""
        with self._cond:
            self._rate_rules.append(
                _RateRule(re.compile(path_pattern), method, limit, per, retry_after, is_global)
            )

    def force_rate_limit(
        self,
        path_pattern: str,
        times: int = 1,
        *,
        method: str | None = None,
        retry_after: float = 0.5,
        is_global: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with 429 regardless of headers."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        headers = self._429_headers(retry_after, is_global, "forced")
        with self._cond:
            self._injected.append(_Injected(re.compile(path_pattern), method, 429, body, headers, times))

    def inject_error(
        self,
        path_pattern: str,
        status: int,
        body: dict[str, Any] | None = None,
        *,
        method: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and ``body``."""
        body = body or {"message": f"{status}: injected error", "code": 0}
        with self._cond:
            self._injected.append(_Injected(re.compile(path_pattern), method, status, body, {}, times))

    # ------------------------------------------------------------------ accessors

    @property
    def commands(self) -> list[dict[str, Any]]:
        """All synced application commands (guild ones carry ``guild_id``)."""
        with self._cond:
            return [copy.deepcopy(c) for cmds in self._commands.values() for c in cmds]

    @property
    def count_429(self) -> int:
        """Number of 429 answers sent."""
        with self._cond:
            return self._count_429

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """IDENTIFY payloads (``d``) received on the gateway."""
        with self._cond:
            return copy.deepcopy(self._identifies)

    @property
    def gateway_connects(self) -> list[dict[str, str]]:
        """Query parameters of every gateway websocket connection (v, encoding, compress)."""
        with self._cond:
            return copy.deepcopy(self._gateway_connects)

    @property
    def gateway_received(self) -> list[dict[str, Any]]:
        """Every gateway payload received from clients."""
        with self._cond:
            return copy.deepcopy(self._gateway_received)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Call]:
        """Logged REST calls, optionally filtered by method and path regex (search)."""
        with self._cond:
            return [
                c for c in self._calls
                if (method is None or c.method == method) and (path is None or re.search(path, c.path))
            ]

    def interaction(self, token: str) -> dict[str, Any]:
        """Summary of an interaction: id, callback types and times, original/followup ids."""
        with self._cond:
            st = self._interaction_state(token)
            return {
                "id": st.id, "token": st.token, "type": st.type, "created": st.created,
                "channel_id": st.channel_id, "expired": self._is_expired(st),
                "callback_types": [t for _, t in st.callbacks],
                "callback_times": [at for at, _ in st.callbacks],
                "original_id": st.original_id, "followup_ids": list(st.followup_ids),
                "payload": copy.deepcopy(st.payload),
            }

    def callback_type(self, token: str) -> int | None:
        """First interaction callback type received (4, 5, 6, 7, ...), or None."""
        with self._cond:
            st = self._interaction_state(token)
            return st.callbacks[0][1] if st.callbacks else None

    def original(self, token: str) -> dict[str, Any] | None:
        """The "@original" message of an interaction as it is now."""
        with self._cond:
            st = self._interaction_state(token)
            msg = self._messages.get(st.original_id or 0)
            return copy.deepcopy(msg) if msg else None

    def followups(self, token: str) -> list[dict[str, Any]]:
        """Followup messages of an interaction (current state, deleted ones skipped)."""
        with self._cond:
            st = self._interaction_state(token)
            return [copy.deepcopy(self._messages[i]) for i in st.followup_ids if i in self._messages]

    def message(self, message_id: int | str) -> dict[str, Any]:
        """A stored message by id (KeyError if unknown or deleted)."""
        with self._cond:
            return copy.deepcopy(self._messages[int(message_id)])

    def channel_messages(self, channel_id: int | None = None) -> list[dict[str, Any]]:
        """Visible (non-ephemeral, not deleted) messages of a channel, oldest first."""
        cid = self.channel_id if channel_id is None else int(channel_id)
        with self._cond:
            return [
                copy.deepcopy(self._messages[i]) for i in self._channel_order.get(cid, [])
                if i in self._messages and not self._messages[i]["flags"] & FLAG_EPHEMERAL
            ]

    def dm_channel_id(self, user_id: int) -> int:
        """Id of the DM channel with a user (created on demand)."""
        with self._cond:
            return int(self._dm_channel(int(user_id))["id"])

    def attachments(self, channel_id: int | None = None, token: str | None = None) -> list[StoredAttachment]:
        """Attachments the bot uploaded, in upload order."""
        with self._cond:
            out = []
            for b in self._blobs.values():
                if channel_id is not None and b.channel_id != int(channel_id):
                    continue
                if token is not None and b.token != token:
                    continue
                msg = self._messages.get(b.message_id or 0)
                out.append(StoredAttachment(
                    b.id, b.message_id or 0, b.channel_id, b.filename, b.data, b.content_type,
                    msg["content"] if msg else "", b.token,
                ))
            return out

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, what: str = "") -> T:
        """Wait until ``predicate()`` is truthy (LookupError counts as false); return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                try:
                    result = predicate()
                except LookupError:
                    result = None  # type: ignore[assignment]
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what or predicate}\n{self.dump()}"
                    )
                self._cond.wait(remaining)

    def wait_for_call(self, method: str, path: str, timeout: float = 5.0) -> Call:
        """Wait for a REST call matching method and path regex; return the first one."""
        return self.wait_for(lambda: next(iter(self.calls(method, path)), None), timeout, f"{method} {path}")

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Wait until a client has identified and received READY + GUILD_CREATE."""
        self.wait_for(lambda: self._session is not None, timeout, "gateway IDENTIFY")

    def dump(self, last: int = 30) -> str:
        """Recent REST calls, one per line."""
        with self._cond:
            lines = [str(c) for c in self._calls[-last:]]
        return "recent calls:\n  " + "\n  ".join(lines or ["(none)"])

    # ------------------------------------------------------------------ injection (test side)

    def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        user_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        guild_id: int | None = -1,
        attachment_size_limit: int | None = None,
        *,
        locale: str = "en-US",
        timeout: float = 10.0,
    ) -> str:
        """Send INTERACTION_CREATE for a CHAT_INPUT command; returns the interaction token.

        ``name`` may be "group sub" for subcommands. ``guild_id=None`` means a DM.
        Waits (up to ``timeout``) for the gateway session and the command sync.
        Attachment options take ``bytes`` or ``(filename, bytes)``.
        """
        gid = self.guild_id if guild_id == -1 else guild_id
        parts = name.split()
        cmd = self._wait_command(parts[0], 1, gid, timeout)
        defs = cmd.get("options") or []
        chain = []
        for part in parts[1:]:
            sub = next((o for o in defs if o["name"] == part and o.get("type") in (1, 2)), None)
            if sub is None:
                raise AssertionError(f"no subcommand {part!r} in {name!r}")
            chain.append(sub)
            defs = sub.get("options") or []
        resolved: dict[str, Any] = {}
        with self._cond:
            cid = self._resolve_channel(channel_id, gid, user_id)
            typed = self._typed_options(defs, options or {}, resolved, cid, gid)
        for sub in reversed(chain):
            typed = [{"name": sub["name"], "type": sub["type"], "options": typed}]
        data: dict[str, Any] = {"id": cmd["id"], "name": parts[0], "type": 1, "options": typed}
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return self._inject(2, data, user_id, cid, gid, attachment_size_limit, locale, timeout)

    def message_command(
        self,
        name: str,
        target_message_content: str = "",
        user_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        guild_id: int | None = -1,
        attachment_size_limit: int | None = None,
        *,
        target_message_id: int | None = None,
        target_author_id: int | None = None,
        timeout: float = 10.0,
    ) -> str:
        """Send a MESSAGE context-menu command on a (new or given) message; returns the token."""
        gid = self.guild_id if guild_id == -1 else guild_id
        cmd = self._wait_command(name, 3, gid, timeout)
        with self._cond:
            cid = self._resolve_channel(channel_id, gid, user_id)
            if target_message_id is None:
                author = self._user(target_author_id or user_id)
                target = self._store_message(cid, self._base_message(cid, author), None)
                target["content"] = target_message_content
            else:
                target = self._messages[int(target_message_id)]
            msg = copy.deepcopy(target)
        data: dict[str, Any] = {
            "id": cmd["id"], "name": name, "type": 3, "target_id": msg["id"],
            "resolved": {"messages": {msg["id"]: msg}},
        }
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return self._inject(2, data, user_id, cid, gid, attachment_size_limit, "en-US", timeout)

    def component_click(
        self,
        message_id: int | str,
        custom_id: str,
        user_id: int = DEFAULT_USER_ID,
        values: list[str] | None = None,
        attachment_size_limit: int | None = None,
        *,
        timeout: float = 10.0,
    ) -> str:
        """Send a MESSAGE_COMPONENT interaction for a component on a stored message; returns the token."""
        with self._cond:
            msg = self._messages.get(int(message_id))
            if msg is None:
                raise AssertionError(f"unknown message {message_id}\n{self.dump()}")
            comp = next((c for c in _walk_components(msg["components"]) if c.get("custom_id") == custom_id), None)
            if comp is None:
                raise AssertionError(f"no component {custom_id!r} on message {message_id}: {msg['components']}")
            cid = int(msg["channel_id"])
            channel = self._channels.get(cid, {})
            gid = int(channel["guild_id"]) if channel.get("guild_id") else None
            message = copy.deepcopy(msg)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": comp["type"]}
        if values is not None or comp["type"] in (3, 5, 6, 7, 8):
            data["values"] = list(values or [])
        return self._inject(3, data, user_id, cid, gid, attachment_size_limit, "en-US", timeout, message)

    def user_message(
        self,
        content: str,
        user_id: int = DEFAULT_USER_ID,
        channel_id: int | None = None,
        guild_id: int | None = -1,
        *,
        timeout: float = 10.0,
    ) -> int:
        """A user posts a message (MESSAGE_CREATE); content is blanked without the intent. Returns its id."""
        gid = self.guild_id if guild_id == -1 else guild_id
        self.wait_until_ready(timeout)
        with self._cond:
            cid = self._resolve_channel(channel_id, gid, user_id)
            msg = self._store_message(cid, self._base_message(cid, self._user(user_id)), None)
            msg["content"] = content
            event = copy.deepcopy(msg)
            intents = self._session.intents if self._session else 0
        mentioned = f"<@{self.bot_id}>" in content or f"<@!{self.bot_id}>" in content
        if gid is not None and not intents & INTENT_MESSAGE_CONTENT and not mentioned:
            event.update(content="", embeds=[], attachments=[], components=[])
        if gid is not None:
            event["guild_id"] = str(gid)
            event["member"] = {k: v for k, v in self._member(user_id).items() if k != "user"}
        self.dispatch("MESSAGE_CREATE", event, timeout)
        return int(msg["id"])

    def dispatch(self, event: str, data: dict[str, Any], timeout: float = 5.0) -> None:
        """Send a raw DISPATCH event to the current gateway session."""
        self.wait_until_ready(timeout)
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._dispatch_async(event, data), self._loop).result(timeout)

    def drop_gateway(self, code: int = 4000, timeout: float = 5.0) -> None:
        """Close the current gateway connection with ``code`` (the client should RESUME)."""
        assert self._loop is not None
        conn = self._session.conn if self._session else None
        if conn is not None:
            asyncio.run_coroutine_threadsafe(conn.ws.close(code=code), self._loop).result(timeout)

    # ------------------------------------------------------------------ model helpers (lock held)

    def _snowflake(self) -> int:
        with self._cond:
            now = int(time.time() * 1000) - DISCORD_EPOCH_MS
            value = max((now << 22) | (next(self._ids) & 0x3FFFFF), self._last_snowflake + 1)
            self._last_snowflake = value
            return value

    def _user(self, user_id: int) -> dict[str, Any]:
        user = self._users.get(int(user_id))
        if user is None:
            user = {
                "id": str(user_id), "username": f"user{user_id}", "discriminator": "0",
                "global_name": f"User {user_id}", "avatar": None, "public_flags": 0, "flags": 0,
            }
            self._users[int(user_id)] = user
        return copy.deepcopy(user)

    def _member(self, user_id: int) -> dict[str, Any]:
        return {
            "user": self._user(user_id), "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": False, "mute": False, "flags": 0, "pending": False, "nick": None, "avatar": None,
            "premium_since": None, "communication_disabled_until": None,
            "permissions": str(DEFAULT_PERMISSIONS),
        }

    def _dm_channel(self, user_id: int) -> dict[str, Any]:
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = self._snowflake()
            self._dm_by_user[user_id] = cid
            self._channels[cid] = {
                "id": str(cid), "type": 1, "last_message_id": None, "flags": 0,
                "recipients": [self._user(user_id)],
            }
        return self._channels[cid]

    def _resolve_channel(self, channel_id: int | None, guild_id: int | None, user_id: int) -> int:
        if guild_id is None:
            return int(self._dm_channel(user_id)["id"]) if channel_id is None else int(channel_id)
        cid = self.channel_id if channel_id is None else int(channel_id)
        if cid in self._deleted:
            raise AssertionError(f"channel {cid} was deleted")
        if cid not in self._channels:
            self.add_channel(cid, f"channel-{cid}", guild_id)
        return cid

    def _guild(self) -> dict[str, Any]:
        gid = str(self.guild_id)
        return {
            "id": gid, "name": "Fake Guild", "icon": None, "splash": None, "discovery_splash": None,
            "banner": None, "description": None, "owner_id": str(DEFAULT_USER_ID), "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "vanity_url_code": None, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US", "nsfw_level": 0,
            "premium_progress_bar_enabled": False, "max_members": 500000,
            "roles": [{
                "id": gid, "name": "@everyone", "permissions": str(DEFAULT_PERMISSIONS), "position": 0,
                "color": 0, "colors": {"primary_color": 0}, "hoist": False, "managed": False,
                "mentionable": False, "flags": 0, "icon": None, "unicode_emoji": None,
            }],
            "emojis": [], "stickers": [], "joined_at": "2024-01-01T00:00:00+00:00", "large": False,
            "unavailable": False, "member_count": len(self._member_ids),
            "members": [self._member(uid) for uid in self._member_ids],
            "channels": [
                {k: v for k, v in c.items() if k != "guild_id"} for c in self._channels.values()
                if c.get("guild_id") == gid
            ],
            "threads": [], "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    def _application(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id), "name": self._bot_user["username"], "icon": None,
            "description": "", "summary": "", "rpc_origins": [], "bot_public": True,
            "bot_require_code_grant": False, "owner": self._user(DEFAULT_USER_ID), "team": None,
            "verify_key": "0" * 64, "flags": 1 << 19, "bot": copy.deepcopy(self._bot_user),
            "interactions_endpoint_url": None, "redirect_uris": [], "tags": [],
            "approximate_guild_count": 1, "integration_types_config": {"0": {}},
        }

    def _interaction_state(self, token: str) -> _Interaction:
        try:
            return self._interactions[token]
        except KeyError:
            raise KeyError(f"unknown interaction token {token!r}") from None

    def _is_expired(self, st: _Interaction) -> bool:
        ttl = self.interaction_ttl
        return st.expired or (ttl is not None and time.monotonic() - st.created > ttl)

    def _find_command(self, name: str, ctype: int, guild_id: int | None) -> dict[str, Any] | None:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        with self._cond:
            for scope in scopes:
                for cmd in self._commands.get(scope, []):
                    if cmd["name"] == name and cmd.get("type", 1) == ctype:
                        return copy.deepcopy(cmd)
        return None

    def _wait_command(self, name: str, ctype: int, guild_id: int | None, timeout: float) -> dict[str, Any]:
        self.wait_until_ready(timeout)
        return self.wait_for(
            lambda: self._find_command(name, ctype, guild_id), timeout, f"command {name!r} (type {ctype}) synced"
        )

    def _typed_options(
        self, defs: list[dict[str, Any]], values: dict[str, Any], resolved: dict[str, Any],
        channel_id: int, guild_id: int | None,
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in defs}
        missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
        if missing:
            raise AssertionError(f"required options missing: {missing}")
        out = []
        for name, value in values.items():
            d = by_name.get(name)
            if d is not None:
                otype = d["type"]
            elif isinstance(value, bool):
                otype = 5
            elif isinstance(value, int):
                otype = 4
            elif isinstance(value, float):
                otype = 10
            elif isinstance(value, (bytes, tuple)):
                otype = 11
            else:
                otype = 3
            out.append({"name": name, "type": otype, "value": self._option_value(
                otype, value, resolved, channel_id, guild_id)})
        return out

    def _option_value(
        self, otype: int, value: Any, resolved: dict[str, Any], channel_id: int, guild_id: int | None
    ) -> Any:
        if otype == 4:
            return int(value)
        if otype == 10:
            return float(value)
        if otype == 5:
            return bool(value)
        if otype in (6, 9):
            uid = int(value)
            resolved.setdefault("users", {})[str(uid)] = self._user(uid)
            if guild_id is not None:
                member = {k: v for k, v in self._member(uid).items() if k != "user"}
                resolved.setdefault("members", {})[str(uid)] = member
            return str(uid)
        if otype == 7:
            ch = self._channels.get(int(value)) or {"id": str(value), "type": 0, "name": f"channel-{value}"}
            resolved.setdefault("channels", {})[str(value)] = {
                "id": str(value), "name": ch.get("name", ""), "type": ch["type"],
                "permissions": str(DEFAULT_PERMISSIONS), "parent_id": None,
            }
            return str(value)
        if otype == 8:
            resolved.setdefault("roles", {})[str(value)] = {
                "id": str(value), "name": f"role-{value}", "permissions": "0", "position": 1,
                "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
            }
            return str(value)
        if otype == 11:
            filename, data = value if isinstance(value, tuple) else ("upload.bin", value)
            aid = self._snowflake()
            blob = _Blob(aid, None, channel_id, filename, bytes(data), self._guess_type(filename), None)
            self._user_blobs[aid] = blob
            resolved.setdefault("attachments", {})[str(aid)] = self._attachment_obj(blob, ephemeral=True)
            return str(aid)
        return value

    def _inject(
        self, itype: int, data: dict[str, Any], user_id: int, channel_id: int, guild_id: int | None,
        size_limit: int | None, locale: str, timeout: float, message: dict[str, Any] | None = None,
    ) -> str:
        with self._cond:
            iid = self._snowflake()
            token = f"aW50ZXJhY3Rpb24.{iid}.{secrets.token_urlsafe(24)}"
            limit = self.max_upload if size_limit is None else size_limit
            app_perms = self.app_permissions
            if channel_id in self._blocked:
                app_perms &= ~(VIEW_CHANNEL | SEND_MESSAGES | ATTACH_FILES)
            channel = copy.deepcopy(self._channels[channel_id])
            channel["permissions"] = str(DEFAULT_PERMISSIONS)
            payload: dict[str, Any] = {
                "id": str(iid), "application_id": str(self.application_id), "type": itype, "data": data,
                "channel_id": str(channel_id), "channel": channel, "token": token, "version": 1,
                "app_permissions": str(app_perms), "locale": locale, "entitlements": [],
                "attachment_size_limit": limit,
            }
            if guild_id is not None:
                payload.update(
                    guild_id=str(guild_id), guild={"id": str(guild_id), "locale": "en-US", "features": []},
                    guild_locale="en-US", member=self._member(user_id), context=0,
                    authorizing_integration_owners={"0": str(guild_id)},
                )
            else:
                payload.update(user=self._user(user_id), context=1, authorizing_integration_owners={"0": "0"})
            if message is not None:
                payload["message"] = message
            st = _Interaction(iid, token, itype, payload, channel_id, time.monotonic(), limit)
            if message is not None:
                st.original_id = st.component_message_id = int(message["id"])
            self._interactions[token] = st
            self._cond.notify_all()
        self.dispatch("INTERACTION_CREATE", copy.deepcopy(payload), timeout)
        return token

    # ------------------------------------------------------------------ messages (lock held)

    def _base_message(self, channel_id: int, author: dict[str, Any], mtype: int = 0, flags: int = 0) -> dict[str, Any]:
        return {
            "id": str(self._snowflake()), "type": mtype, "channel_id": str(channel_id), "author": author,
            "content": "", "timestamp": _now_iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "components": [], "pinned": False, "flags": flags,
        }

    def _store_message(self, channel_id: int, msg: dict[str, Any], token: str | None) -> dict[str, Any]:
        mid = int(msg["id"])
        self._messages[mid] = msg
        self._channel_order.setdefault(channel_id, []).append(mid)
        if token:
            self._message_token[mid] = token
        channel = self._channels.get(channel_id)
        if channel is not None and not msg["flags"] & FLAG_EPHEMERAL:
            channel["last_message_id"] = msg["id"]
        return msg

    @staticmethod
    def _guess_type(filename: str) -> str:
        return mimetypes.guess_type(filename)[0] or "application/octet-stream"

    def _attachment_obj(
        self, blob: _Blob, *, ephemeral: bool = False, description: str | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/attachments/{blob.channel_id}/{blob.id}/{quote(blob.filename)}"
        att: dict[str, Any] = {
            "id": str(blob.id), "filename": blob.filename, "size": len(blob.data), "url": url,
            "proxy_url": url, "content_type": blob.content_type, "height": None, "width": None,
        }
        if ephemeral:
            att["ephemeral"] = True
        if description:
            att["description"] = description
        return att

    @staticmethod
    def _check_sizes(uploads: list[_Upload], limit: int) -> None:
        """The files of one request together within the upload limit."""
        if sum(len(u.data) for u in uploads) > limit:
            raise ApiError(413, {"message": "Request entity too large", "code": 40005})

    def _apply_payload(
        self, msg: dict[str, Any], payload: dict[str, Any], uploads: list[_Upload], token: str | None,
        *, creating: bool,
    ) -> dict[str, Any]:
        """Return an updated copy of ``msg``; registers uploaded blobs only if valid."""
        new = copy.deepcopy(msg)
        if "content" in payload:
            new["content"] = payload["content"] or ""
        if "embeds" in payload:
            new["embeds"] = [dict({"type": "rich"}, **e) for e in payload["embeds"] or []]
        if "components" in payload:
            new["components"] = copy.deepcopy(payload["components"] or [])
        if payload.get("flags") is not None:
            allowed = EDITABLE_FLAGS | (FLAG_EPHEMERAL if creating else 0)
            new["flags"] = (new["flags"] & ~allowed) | (int(payload["flags"]) & allowed)
        if creating and payload.get("tts"):
            new["tts"] = True
        if creating and payload.get("message_reference"):
            new["message_reference"] = payload["message_reference"]
            new["type"] = 19 if new["type"] == 0 else new["type"]
        if not creating:
            new["flags"] &= ~FLAG_LOADING
            new["edited_timestamp"] = _now_iso()
        blobs = self._merge_attachments(new, payload, uploads, token)
        _check_lengths(new)
        empty = not (new["content"] or new["embeds"] or new["attachments"] or new["components"]
                     or payload.get("sticker_ids") or payload.get("poll"))
        if empty and not new["flags"] & FLAG_LOADING:
            raise ApiError(400, {"message": "Cannot send an empty message", "code": 50006})
        for blob in blobs:
            self._blobs[blob.id] = blob
        return new

    def _merge_attachments(
        self, msg: dict[str, Any], payload: dict[str, Any], uploads: list[_Upload], token: str | None
    ) -> list[_Blob]:
        indexed: dict[int, _Upload] = {}
        for pos, up in enumerate(uploads):
            m = re.fullmatch(r"files\[(\d+)\]|file(\d*)", up.field)
            idx = int(next((g for g in m.groups() if g), pos)) if m else pos
            indexed[idx] = up
        existing = {a["id"]: a for a in msg["attachments"]}
        entries = payload.get("attachments")
        blobs: list[_Blob] = []
        result: list[dict[str, Any]] = [] if entries is not None else list(existing.values())
        ephemeral = bool(msg["flags"] & FLAG_EPHEMERAL)

        def add(up: _Upload, entry: dict[str, Any]) -> None:
            name = entry.get("filename") or up.filename
            blob = _Blob(self._snowflake(), int(msg["id"]), int(msg["channel_id"]), name, up.data,
                         self._guess_type(name), token)
            blobs.append(blob)
            result.append(self._attachment_obj(blob, ephemeral=ephemeral, description=entry.get("description")))

        used: set[int] = set()
        for entry in entries or []:
            eid = str(entry.get("id"))
            if eid in existing:
                result.append(existing[eid])
            elif eid.isdigit() and int(eid) in indexed and int(eid) not in used:
                used.add(int(eid))
                add(indexed[int(eid)], entry)
        for idx, up in sorted(indexed.items()):
            if idx not in used:
                add(up, {})
        msg["attachments"] = result
        return blobs

    def _create_message(
        self, channel_id: int, payload: dict[str, Any], uploads: list[_Upload], st: _Interaction | None,
        *, mtype: int = 0, flags: int = 0,
    ) -> dict[str, Any]:
        base = self._base_message(channel_id, copy.deepcopy(self._bot_user), mtype, flags)
        if st is not None:
            user = st.payload.get("member", {}).get("user") or st.payload.get("user")
            base.update(webhook_id=str(self.application_id), application_id=str(self.application_id))
            meta: dict[str, Any] = {
                "id": str(st.id), "type": st.type, "user": user,
                "authorizing_integration_owners": st.payload.get("authorizing_integration_owners", {}),
            }
            if st.original_id is not None and st.original_id != st.component_message_id:
                meta["original_response_message_id"] = str(st.original_id)
            if st.component_message_id is not None:
                meta["interacted_message_id"] = str(st.component_message_id)
            base["interaction_metadata"] = meta
        msg = self._apply_payload(base, payload, uploads, st.token if st else None, creating=True)
        return self._store_message(channel_id, msg, st.token if st else None)

    def _edit_message(
        self, mid: int, payload: dict[str, Any], uploads: list[_Upload], token: str | None
    ) -> dict[str, Any]:
        msg = self._messages.get(mid)
        if msg is None:
            raise ApiError(404, UNKNOWN_MESSAGE)
        new = self._apply_payload(msg, payload, uploads, token or self._message_token.get(mid), creating=False)
        self._messages[mid] = new
        return new

    # ------------------------------------------------------------------ REST plumbing

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], str, Callable[[_Req], tuple[int, Any]]]]:
        table: list[tuple[str, str, Callable[[_Req], tuple[int, Any]]]] = [
            ("GET", "/users/@me", self._r_me),
            ("GET", "/users/{user_id}", self._r_user),
            ("POST", "/users/@me/channels", self._r_create_dm),
            ("GET", "/gateway", self._r_gateway),
            ("GET", "/gateway/bot", self._r_gateway_bot),
            ("GET", "/oauth2/applications/@me", self._r_app),
            ("GET", "/applications/@me", self._r_app),
            ("GET", "/applications/{app}/commands", self._r_get_commands),
            ("PUT", "/applications/{app}/commands", self._r_put_commands),
            ("POST", "/applications/{app}/commands", self._r_post_command),
            ("GET", "/applications/{app}/guilds/{guild}/commands", self._r_get_commands),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", self._r_put_commands),
            ("POST", "/applications/{app}/guilds/{guild}/commands", self._r_post_command),
            ("POST", "/interactions/{id}/{token}/callback", self._r_callback),
            ("POST", "/webhooks/{app}/{token}", self._r_followup),
            ("GET", "/webhooks/{app}/{token}/messages/{message}", self._r_webhook_get),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}", self._r_webhook_edit),
            ("DELETE", "/webhooks/{app}/{token}/messages/{message}", self._r_webhook_delete),
            ("GET", "/guilds/{guild}", self._r_guild),
            ("GET", "/channels/{channel}", self._r_channel),
            ("GET", "/channels/{channel}/messages", self._r_history),
            ("POST", "/channels/{channel}/messages", self._r_send),
            ("GET", "/channels/{channel}/messages/{message}", self._r_get_message),
            ("PATCH", "/channels/{channel}/messages/{message}", self._r_edit),
            ("DELETE", "/channels/{channel}/messages/{message}", self._r_delete),
            ("POST", "/channels/{channel}/typing", self._r_typing),
        ]
        routes = []
        for method, template, handler in table:
            regex = re.sub(r"\\\{[a-z_]+\\\}", "([^/]+)", re.escape(template))
            routes.append((method, re.compile(regex), template, handler))
        return routes

    def _match(self, method: str, path: str) -> tuple[Callable[[_Req], tuple[int, Any]], tuple[str, ...], str]:
        wrong_method = False
        for m, regex, template, handler in self._routes:
            hit = regex.fullmatch(path)
            if hit is None:
                continue
            if m == method:
                return handler, hit.groups(), template
            wrong_method = True
        if wrong_method:
            raise ApiError(405, {"message": "405: Method Not Allowed", "code": 0})
        raise ApiError(404, NOT_FOUND)

    async def _read_body(self, request: web.Request) -> tuple[Any, list[_Upload]]:
        uploads: list[_Upload] = []
        if request.content_type.startswith("multipart/"):
            payload = None
            reader = await request.multipart()
            async for part in reader:
                if not hasattr(part, "read"):
                    continue
                data = bytes(await part.read(decode=False))
                name, filename = disposition(part.headers.get("Content-Disposition", ""))
                if name == "payload_json":
                    payload = json.loads(data.decode() or "null")
                elif filename is not None:
                    uploads.append(_Upload(name, filename, data))
            return payload, uploads
        raw = await request.read()
        if not raw:
            return None, uploads
        if request.content_type == "application/json":
            return json.loads(raw), uploads
        return None, uploads

    def _429_headers(self, retry_after: float, is_global: bool, bucket: str) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": "global" if is_global else "user",
            "Retry-After": str(math.ceil(retry_after)), "Via": "1.1 google",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        return headers

    def _rate_check(self, method: str, path: str, bucket: str) -> tuple[dict[str, str], ApiError | None]:
        """Apply injected errors and rate rules; return success headers or an error."""
        for inj in self._injected:
            if inj.times > 0 and (inj.method in (None, method)) and inj.pattern.search(path):
                inj.times -= 1
                return {}, ApiError(inj.status, copy.deepcopy(inj.body), dict(inj.headers))
        now = time.monotonic()
        limit, remaining, reset_after = 5, 4, 1.0
        for rule in self._rate_rules:
            if rule.method not in (None, method) or not rule.pattern.search(path):
                continue
            major = re.match(r"/(?:channels|guilds|webhooks|interactions)/[^/]+(?:/[^/]+)?", path)
            key = major.group(0) if major else path
            hits = [t for t in rule.hits.get(key, []) if now - t < rule.per]
            rule.hits[key] = hits
            if len(hits) >= rule.limit:
                wait = rule.per - (now - hits[0]) if hits else rule.retry_after
                retry = max(rule.retry_after, round(wait, 3))
                body = {"message": "You are being rate limited.", "retry_after": retry, "global": rule.is_global}
                return {}, ApiError(429, body, self._429_headers(retry, rule.is_global, bucket))
            hits.append(now)
            limit, remaining = rule.limit, rule.limit - len(hits)
            reset_after = rule.per - (now - hits[0])
        headers = {
            "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}", "X-RateLimit-Bucket": bucket,
        }
        return headers, None

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = re.sub(r"^/api(?:/v\d+)?", "", request.path) or "/"
        query = dict(request.query)
        headers: dict[str, str] = {}
        req_json: Any = None
        uploads: list[_Upload] = []
        try:
            try:
                req_json, uploads = await self._read_body(request)
            except ValueError:
                raise ApiError(400, {"message": "The request body contains invalid JSON.", "code": 50109}) from None
            with self._cond:
                handler, args, template = self._match(request.method, path)
                bucket = hashlib.sha1(f"{request.method} {template}".encode()).hexdigest()[:32]
                headers, limited = self._rate_check(request.method, path, bucket)
                if limited is not None:
                    raise limited
                req = _Req(request.method, path, args, query, req_json, uploads, request.headers.get("Authorization"))
                self._check_auth(req, template)
                status, body = handler(req)
        except ApiError as err:
            status, body = err.status, err.body
            headers.update(err.headers)
            if status == 404 and body == NOT_FOUND:
                log.warning("fake discord: unhandled %s %s", request.method, request.path)
        except Exception as exc:
            log.exception("fake discord: handler crashed on %s %s", request.method, path)
            status, body = 500, {"message": f"fake discord crashed: {exc!r}", "code": 0}
        self._record(request.method, path, query, req_json, uploads, status, body)
        return _json_response(status, body, headers)

    def _record(
        self, method: str, path: str, query: dict[str, str], req_json: Any, uploads: list[_Upload],
        status: int, body: Any,
    ) -> None:
        call = Call(
            time.monotonic(), method, path, query, req_json,
            tuple((u.field, u.filename, len(u.data)) for u in uploads), status, copy.deepcopy(body),
        )
        with self._cond:
            self._calls.append(call)
            if status == 429:
                self._count_429 += 1
            self._cond.notify_all()

    def _check_auth(self, req: _Req, template: str) -> None:
        if template.startswith(("/webhooks/", "/interactions/")) or self.token is None:
            return
        if req.auth != f"Bot {self.token}":
            raise ApiError(401, {"message": "401: Unauthorized", "code": 0})

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        aid = int(request.match_info["att"]) if request.match_info["att"].isdigit() else 0
        with self._cond:
            blob = self._blobs.get(aid) or self._user_blobs.get(aid)
        self._record("GET", request.path, {}, None, [], 200 if blob else 404, None)
        if blob is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob.data, headers={"Content-Type": blob.content_type})

    # ------------------------------------------------------------------ REST handlers (lock held)

    def _r_me(self, req: _Req) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._bot_user)

    def _r_user(self, req: _Req) -> tuple[int, Any]:
        if not req.args[0].isdigit():
            raise ApiError(404, {"message": "Unknown User", "code": 10013})
        return 200, self._user(int(req.args[0]))

    def _r_create_dm(self, req: _Req) -> tuple[int, Any]:
        uid = int((req.json or {}).get("recipient_id", 0))
        return 200, copy.deepcopy(self._dm_channel(uid))

    def _r_gateway(self, req: _Req) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    def _r_gateway_bot(self, req: _Req) -> tuple[int, Any]:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86400000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _r_app(self, req: _Req) -> tuple[int, Any]:
        return 200, self._application()

    def _check_app(self, app: str) -> None:
        if app != str(self.application_id):
            raise ApiError(403, {"message": "Missing Access", "code": 50001})

    def _r_get_commands(self, req: _Req) -> tuple[int, Any]:
        self._check_app(req.args[0])
        scope = int(req.args[1]) if len(req.args) > 1 else None
        return 200, copy.deepcopy(self._commands.get(scope, []))

    def _command_obj(self, body: dict[str, Any], scope: int | None, old: list[dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("name"):
            raise ApiError(400, {"message": "Invalid Form Body", "code": 50035})
        ctype = body.get("type", 1)
        prev = next((c for c in old if c["name"] == body["name"] and c.get("type", 1) == ctype), None)
        cmd = {
            "description": "", "options": [], "default_member_permissions": None, "dm_permission": True,
            "nsfw": False, "name_localizations": None, "description_localizations": None,
            "contexts": None, "integration_types": [0],
        }
        cmd.update(copy.deepcopy(body))
        cmd.update(
            id=prev["id"] if prev else str(self._snowflake()), application_id=str(self.application_id),
            version=str(self._snowflake()), type=ctype,
        )
        if scope is not None:
            cmd["guild_id"] = str(scope)
        return cmd

    def _r_put_commands(self, req: _Req) -> tuple[int, Any]:
        self._check_app(req.args[0])
        scope = int(req.args[1]) if len(req.args) > 1 else None
        old = self._commands.get(scope, [])
        names: dict[int, dict[str, set[str]]] = {}
        for index, body in enumerate(req.json or []):
            if isinstance(body, dict):
                _check_command(body, index, names)
        self._commands[scope] = [self._command_obj(b, scope, old) for b in req.json or []]
        return 200, copy.deepcopy(self._commands[scope])

    def _r_post_command(self, req: _Req) -> tuple[int, Any]:
        self._check_app(req.args[0])
        scope = int(req.args[1]) if len(req.args) > 1 else None
        old = self._commands.setdefault(scope, [])
        cmd = self._command_obj(req.json, scope, old)
        self._commands[scope] = [c for c in old if c["id"] != cmd["id"]] + [cmd]
        return 200, copy.deepcopy(cmd)

    def _live_interaction(self, token: str) -> _Interaction:
        st = self._interactions.get(token)
        if st is None or self._is_expired(st):
            raise ApiError(401, INVALID_TOKEN)
        return st

    def _r_callback(self, req: _Req) -> tuple[int, Any]:
        iid, token = req.args
        st = self._live_interaction(token)
        if iid != str(st.id):
            raise ApiError(404, UNKNOWN_INTERACTION)
        if st.channel_id in self._deleted:
            raise ApiError(404, UNKNOWN_CHANNEL)
        if st.callbacks:
            raise ApiError(400, {"message": "Interaction has already been acknowledged.", "code": 40060})
        if self.response_deadline is not None and time.monotonic() - st.created > self.response_deadline:
            raise ApiError(404, UNKNOWN_INTERACTION)
        body = req.json or {}
        ctype = int(body.get("type", 0))
        self._check_sizes(req.uploads, st.attachment_size_limit)
        msg = self._callback_message(st, ctype, body.get("data") or {}, req.uploads)
        st.callbacks.append((time.monotonic(), ctype))
        if req.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        inter: dict[str, Any] = {"id": str(st.id), "type": st.type}
        resource: dict[str, Any] = {"type": ctype}
        if msg is not None and ctype in (4, 5, 7):
            inter.update(
                response_message_id=msg["id"], response_message_loading=ctype == 5,
                response_message_ephemeral=bool(msg["flags"] & FLAG_EPHEMERAL),
            )
            resource["message"] = copy.deepcopy(msg)
        return 200, {"interaction": inter, "resource": resource}

    def _callback_message(
        self, st: _Interaction, ctype: int, data: dict[str, Any], uploads: list[_Upload]
    ) -> dict[str, Any] | None:
        """Apply a callback of type ``ctype``; return the message it created or touched."""
        if ctype not in (1, 4, 5, 6, 7, 8, 9, 10, 12):
            raise ApiError(400, {"message": "Invalid Form Body", "code": 50035})
        if ctype in (6, 7) and st.component_message_id is None:
            raise ApiError(400, {"message": "Interaction callback type is not valid here", "code": 50035})
        mtype = 0 if st.type == 3 else (20 if st.payload["data"].get("type", 1) == 1 else 23)
        if ctype == 4:
            msg = self._create_message(st.channel_id, data, uploads, st, mtype=mtype)
            st.original_id = int(msg["id"])
            return msg
        if ctype == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            msg = self._create_message(st.channel_id, {}, [], st, mtype=mtype, flags=flags)
            st.original_id = int(msg["id"])
            return msg
        if ctype == 7 and st.component_message_id is not None:
            return self._edit_message(st.component_message_id, data, uploads, None)
        if ctype == 6 and st.component_message_id is not None:
            return self._messages.get(st.component_message_id)
        return None

    def _webhook_interaction(self, app: str, token: str) -> _Interaction:
        st = self._live_interaction(token)
        if app != str(self.application_id):
            raise ApiError(404, UNKNOWN_WEBHOOK)
        if st.channel_id in self._deleted:
            raise ApiError(404, UNKNOWN_CHANNEL)
        if not st.callbacks:
            raise ApiError(404, UNKNOWN_WEBHOOK)
        return st

    def _webhook_message_id(self, st: _Interaction, ref: str) -> int:
        if ref == "@original":
            if st.original_id is None or st.original_id not in self._messages:
                raise ApiError(404, UNKNOWN_MESSAGE)
            return st.original_id
        mid = int(ref) if ref.isdigit() else 0
        if mid not in self._messages or (mid != st.original_id and mid not in st.followup_ids):
            raise ApiError(404, UNKNOWN_MESSAGE)
        return mid

    def _r_followup(self, req: _Req) -> tuple[int, Any]:
        st = self._webhook_interaction(*req.args)
        self._check_sizes(req.uploads, st.attachment_size_limit)
        loading = self._messages.get(st.original_id or 0)
        if loading is not None and loading["flags"] & FLAG_LOADING:
            # like Discord: the first followup after a defer replaces the "thinking..." message
            msg = self._edit_message(st.original_id or 0, req.json or {}, req.uploads, st.token)
        else:
            msg = self._create_message(st.channel_id, req.json or {}, req.uploads, st)
        st.followup_ids.append(int(msg["id"]))
        if req.query.get("wait", "").lower() in ("1", "true"):
            return 200, copy.deepcopy(msg)
        return 204, None

    def _r_webhook_get(self, req: _Req) -> tuple[int, Any]:
        st = self._webhook_interaction(req.args[0], req.args[1])
        return 200, copy.deepcopy(self._messages[self._webhook_message_id(st, req.args[2])])

    def _r_webhook_edit(self, req: _Req) -> tuple[int, Any]:
        st = self._webhook_interaction(req.args[0], req.args[1])
        mid = self._webhook_message_id(st, req.args[2])
        self._check_sizes(req.uploads, st.attachment_size_limit)
        return 200, copy.deepcopy(self._edit_message(mid, req.json or {}, req.uploads, st.token))

    def _r_webhook_delete(self, req: _Req) -> tuple[int, Any]:
        st = self._webhook_interaction(req.args[0], req.args[1])
        del self._messages[self._webhook_message_id(st, req.args[2])]
        return 204, None

    def _r_guild(self, req: _Req) -> tuple[int, Any]:
        if req.args[0] != str(self.guild_id):
            raise ApiError(404, {"message": "Unknown Guild", "code": 10004})
        guild = self._guild()
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at", "large"):
            guild.pop(key, None)
        return 200, guild

    def _channel_for(self, raw_id: str) -> dict[str, Any]:
        cid = int(raw_id) if raw_id.isdigit() else 0
        channel = self._channels.get(cid)
        if channel is None:
            raise ApiError(404, UNKNOWN_CHANNEL)
        if cid in self._blocked:
            raise ApiError(403, {"message": "Missing Access", "code": 50001})
        return channel

    def _channel_message(self, channel: dict[str, Any], raw_id: str) -> int:
        mid = int(raw_id) if raw_id.isdigit() else 0
        msg = self._messages.get(mid)
        if msg is None or msg["channel_id"] != channel["id"]:
            raise ApiError(404, UNKNOWN_MESSAGE)
        return mid

    def _r_channel(self, req: _Req) -> tuple[int, Any]:
        return 200, copy.deepcopy(self._channel_for(req.args[0]))

    def _r_history(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel_for(req.args[0])
        limit = int(req.query.get("limit", 50))
        ids = [i for i in self._channel_order.get(int(channel["id"]), []) if i in self._messages]
        visible = [self._messages[i] for i in ids if not self._messages[i]["flags"] & FLAG_EPHEMERAL]
        return 200, copy.deepcopy(list(reversed(visible))[:limit])

    def _r_send(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel_for(req.args[0])
        if channel["type"] == 1 and any(int(u["id"]) in self._blocked_dm for u in channel["recipients"]):
            raise ApiError(403, {"message": "Cannot send messages to this user", "code": 50007})
        self._check_sizes(req.uploads, self.max_upload)
        payload = req.json or {}
        nonce = (channel["id"], str(payload.get("nonce"))) if payload.get("enforce_nonce") else None
        if nonce is not None and self._nonces.get(nonce) in self._messages:
            return 200, copy.deepcopy(self._messages[self._nonces[nonce]])  # Discord de-duplicates
        msg = self._create_message(int(channel["id"]), payload, req.uploads, None)
        if nonce is not None:
            self._nonces[nonce] = int(msg["id"])
        return 200, copy.deepcopy(msg)

    def _r_get_message(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel_for(req.args[0])
        return 200, copy.deepcopy(self._messages[self._channel_message(channel, req.args[1])])

    def _r_edit(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel_for(req.args[0])
        mid = self._channel_message(channel, req.args[1])
        if self._messages[mid]["author"]["id"] != str(self.bot_id):
            raise ApiError(403, {"message": "Cannot edit a message authored by another user", "code": 50005})
        self._check_sizes(req.uploads, self.max_upload)
        return 200, copy.deepcopy(self._edit_message(mid, req.json or {}, req.uploads, None))

    def _r_delete(self, req: _Req) -> tuple[int, Any]:
        channel = self._channel_for(req.args[0])
        del self._messages[self._channel_message(channel, req.args[1])]
        return 204, None

    def _r_typing(self, req: _Req) -> tuple[int, Any]:
        self._channel_for(req.args[0])
        return 204, None

    # ------------------------------------------------------------------ gateway

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        with self._cond:  # an injected error on the gateway's path refuses the handshake (Discord unavailable)
            refusal = next((inj for inj in self._injected if inj.times > 0 and inj.method in (None, "GET")
                            and inj.pattern.search(request.path)), None)
            if refusal is not None:
                refusal.times -= 1
        if refusal is not None:
            return web.json_response(refusal.body, status=refusal.status)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        use_zlib = self.zlib_stream and request.query.get("compress") == "zlib-stream"
        with self._cond:
            self._gateway_connects.append(dict(request.query))
        conn = _GwConn(ws, zlib.compressobj() if use_zlib else None, asyncio.Lock())
        self._conns.append(conn)
        try:
            await self._gw_send(conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval,
                                                        "_trace": ["fake-discord"]}})
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    await ws.close(code=4002, message=b"Error while decoding payload.")
                    break
                with self._cond:
                    self._gateway_received.append(payload)
                    self._cond.notify_all()
                await self._gw_receive(conn, payload)
        finally:
            self._conns.remove(conn)
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
        return ws

    async def _gw_send(self, conn: _GwConn, payload: dict[str, Any]) -> None:
        payload.setdefault("s", None)
        payload.setdefault("t", None)
        text = json.dumps(payload, separators=(",", ":"))
        async with conn.lock:
            if conn.ws.closed:
                return
            if conn.deflate is not None:
                data = conn.deflate.compress(text.encode()) + conn.deflate.flush(zlib.Z_SYNC_FLUSH)
                await conn.ws.send_bytes(data)
            else:
                await conn.ws.send_str(text)

    async def _gw_receive(self, conn: _GwConn, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        if op == 1:
            await self._gw_send(conn, {"op": 11, "d": None})
        elif op == 2:
            await self._gw_identify(conn, d or {})
        elif op == 6:
            await self._gw_resume(conn, d or {})
        elif op == 8:
            await self._gw_members(conn, d or {})
        elif op not in (3, 4):
            log.info("fake discord gateway: ignoring op %s", op)

    async def _gw_identify(self, conn: _GwConn, d: dict[str, Any]) -> None:
        with self._cond:
            self._identifies.append(copy.deepcopy(d))
        if self.token is not None and d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        intents = int(d.get("intents", 0))
        if self.allowed_intents is not None and intents & PRIVILEGED_INTENTS & ~self.allowed_intents:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        session = _GwSession(secrets.token_hex(16), intents, d.get("shard"), conn=conn)
        conn.session = session
        ready: dict[str, Any] = {
            "v": 10, "user": copy.deepcopy(self._bot_user), "guilds": [{"id": str(self.guild_id), "unavailable": True}],
            "session_id": session.id, "session_type": "normal", "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 1 << 19}, "private_channels": [],
            "relationships": [], "presences": [], "guild_join_requests": [], "geo_ordered_rtc_regions": [],
            "user_settings": {}, "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        with self._cond:
            guild = self._guild()
        await self._gw_dispatch(session, "READY", ready)
        await self._gw_dispatch(session, "GUILD_CREATE", guild)
        with self._cond:
            self._sessions[session.id] = session
            self._session = session
            self._cond.notify_all()

    async def _gw_resume(self, conn: _GwConn, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if session is None or (self.token is not None and d.get("token") != self.token):
            await self._gw_send(conn, {"op": 9, "d": False})
            return
        session.conn = conn
        conn.session = session
        last = int(d.get("seq") or 0)
        for payload in [p for p in session.sent if p["s"] > last]:
            await self._gw_send(conn, dict(payload))
        await self._gw_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]})
        with self._cond:
            self._session = session
            self._cond.notify_all()

    async def _gw_members(self, conn: _GwConn, d: dict[str, Any]) -> None:
        if conn.session is None:
            return
        with self._cond:
            members = [self._member(uid) for uid in self._member_ids]
        wanted = d.get("user_ids")
        if wanted is not None:
            ids = {str(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if m["user"]["id"] in ids]
        elif d.get("query"):
            members = [m for m in members if m["user"]["username"].startswith(d["query"])]
        chunk = {
            "guild_id": str(d.get("guild_id", self.guild_id)), "members": members, "chunk_index": 0,
            "chunk_count": 1, "not_found": [], "presences": [],
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        await self._gw_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _gw_dispatch(self, session: _GwSession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.sent.append(payload)
        del session.sent[:-1000]
        if session.conn is not None:
            await self._gw_send(session.conn, dict(payload))

    async def _dispatch_async(self, event: str, data: dict[str, Any]) -> None:
        session = self._session
        if session is None:
            raise AssertionError("no gateway session")
        await self._gw_dispatch(session, event, data)
