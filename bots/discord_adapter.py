"""Where a Discord request's messages go, and the buttons on them.

While the interaction token lives (Discord gives 15 minutes; we stop at 14) the
status is the interaction's original response and the MP3s are followups. After
that, or as soon as Discord refuses the token (401 50027, 404 10015), the request
goes on with the bot's own token as ordinary messages in the channel, and when
the channel refuses the bot (403) in a DM to the user. A channel that no longer
exists (404 10003), or one that refuses the bot while the user's DMs do too, is
ChatGone: the core ends the request there. Where the status message
is now lives in `req.status` (mode, channel, message id, earlier message ids),
which the core keeps in Redis: a restarted bot goes on in the right place.

Discord cannot send an upload again by reference, so every delivered part is
also kept in the local `FileCache`; the shared delivery cache records its name.
An album's tracks share messages: up to 10 attachments each, together within the
chat's upload limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import discord

from bots.core import Request, Status
from bots.filecache import FileCache
from bots.throttle import ChatGone, MessageGone, Priority, RateLimited
from common import i18n, metrics
from common.i18n import N_
from common.jobs import Job
from common.render import LABELS, Button, MarkdownMarkup, StatusView, caption, captions, track
from common.textlimits import fit

log = logging.getLogger(__name__)

T = TypeVar("T")

TOKEN_LIFE = 14 * 60  # seconds an interaction token is used; Discord honours it for 15 minutes
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
TOKEN_CODES = (10015, 50027)  # unknown webhook, invalid webhook token
HANDED_OVER = N_("This goes on in a new message below (Discord lets a bot answer here for 15 minutes).")
FILES_PER_MESSAGE = 10  # Discord's most attachments in one message
STYLES = {Button.CANCEL: discord.ButtonStyle.secondary, Button.RETRY: discord.ButtonStyle.primary,
          Button.SPLIT: discord.ButtonStyle.primary, Button.START: discord.ButtonStyle.primary}


class Mode(StrEnum):
    WEBHOOK = "webhook"
    """The interaction's own messages, through its token."""
    CHANNEL = "channel"
    """Ordinary messages in the channel, with the bot's token."""
    DM = "dm"
    """A direct message to the user: the channel refused the bot."""
    NOWHERE = "nowhere"
    """Neither the channel nor the user's DMs take the bot's messages: status edits stop."""


class TokenGone(Exception):
    """The interaction token no longer works."""


class JobButton(discord.ui.DynamicItem[discord.ui.Button],
                template=r"(?P<action>cancel|retry|split|start):(?P<job_id>\w+)"):
    """Cancel, Retry or Split on a status message; works across restarts (the job id is in the custom id)."""

    def __init__(self, action: str, job_id: str, label: str = "") -> None:
        self.action, self.job_id = Button(action), job_id
        super().__init__(discord.ui.Button(label=label or LABELS[self.action], style=STYLES[self.action],
                                           custom_id=f"{self.action}:{job_id}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: Any) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.client.job_button(interaction, self.action, self.job_id)  # type: ignore[attr-defined]


def buttons_of(view: StatusView) -> discord.ui.View | None:
    if not view.buttons:
        return None
    buttons = discord.ui.View(timeout=None)
    for button in view.buttons:
        buttons.add_item(JobButton(button, view.job_id, view.label(button)))
    return buttons


@dataclass(frozen=True)
class Outgoing:
    """One MP3 on its way, and the line that names it."""

    path: Path
    filename: str
    size: int
    title: str
    suffix: str
    url: str


def messages_of(files: list[Outgoing], limit: int) -> list[list[Outgoing]]:
    """The files in order, cut into messages of at most FILES_PER_MESSAGE whose sizes add up to at most `limit`
    (a file over it by itself goes alone: Discord refuses it as it would any single upload)."""
    messages: list[list[Outgoing]] = []
    total = 0
    for file in files:
        if not messages or len(messages[-1]) >= FILES_PER_MESSAGE or total + file.size > limit:
            messages.append([])
            total = 0
        messages[-1].append(file)
        total += file.size
    return messages


def token_alive(req: Request, now: float | None = None) -> bool:
    """May this request still use its interaction token?"""
    if req.status.get("mode", Mode.WEBHOOK) != Mode.WEBHOOK or not req.where.get("token"):
        return False
    return (now or time.time()) - float(req.where.get("created", 0)) < TOKEN_LIFE


class DiscordAdapter:
    platform = "discord"
    markup = MarkdownMarkup()

    def __init__(self, client: discord.Client, files: FileCache, admin_ids: list[int],
                 default_language: str = i18n.SOURCE) -> None:
        self.client = client
        self.files = files
        self.admin_ids = admin_ids
        self.default_language = default_language

    # -- the core's calls
    async def post_status(self, req: Request, view: StatusView) -> Status:
        req.status = {"mode": Mode.WEBHOOK, "message_id": req.where.get("message_id")}
        await self._status(req, view)
        return req.status

    async def edit_status(self, req: Request, view: StatusView) -> None:
        if req.status:
            await self._status(req, view)

    async def upload(self, req: Request, job: Job, part: int) -> dict[str, Any]:
        name = self._cache_name(req, job, part)
        path = Path(job.files[part])
        kept = await asyncio.to_thread(self.files.put, path, name) if job.video_key else None
        lang = i18n.get(req.lang)
        title, suffix, _ = track(job, part, lang)
        await self._send_files(req, [(kept or path, path.name)], caption(title, job.url, self.markup, lang, suffix))
        return {"file": name, "filename": path.name, "title": title, "suffix": suffix,
                "size": path.stat().st_size}

    async def upload_group(self, req: Request, files: list[tuple[Job, int]]) -> None:
        """Several MP3s in the order given, in as few messages as Discord takes (up to 10 attachments each,
        together within the chat's upload limit), a line of caption per file. Each is kept in the file
        cache as a single upload is; the job's own file is sent (a later copy could evict an earlier one)."""
        outgoing, lang = [], i18n.get(req.lang)
        for job, part in files:
            path = Path(job.files[part])
            if job.video_key:
                await asyncio.to_thread(self.files.put, path, self._cache_name(req, job, part))
            title, suffix, _ = track(job, part, lang)
            outgoing.append(Outgoing(path, path.name, path.stat().st_size, title, suffix, job.url))
        for message in messages_of(outgoing, self.upload_limit(req)):
            text = captions([(f.title, f.url, f.suffix) for f in message], self.markup, lang)
            await self._send_files(req, [(f.path, f.filename) for f in message], text)

    async def send_cached(self, req: Request, part: dict[str, Any], buttons: StatusView | None = None) -> bool:
        path = await asyncio.to_thread(self.files.get, part["file"])
        if path is None:
            return False
        text = caption(part["title"], req.url, self.markup, i18n.get(req.lang), part.get("suffix", ""))
        await self._send_files(req, [(path, part["filename"])], text, buttons_of(buttons) if buttons else None)
        return True

    @staticmethod
    def upload_limit(req: Request) -> int:
        """The most bytes one message may carry: the interaction's attachment limit, else Discord's default."""
        return req.limit_bytes or discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES

    @staticmethod
    def _cache_name(req: Request, job: Job, part: int) -> str:
        return FileCache.name(job.video_key, req.bitrate, req.limit_bytes, part, req.variant)

    def room(self, chat_id: int, priority: Priority) -> bool:
        """discord.py waits out its own global and per-route buckets: nothing to add."""
        return True

    def cached_usable(self, req: Request, parts: list[dict[str, Any]]) -> bool:
        """Every part still on disk and within this interaction's attachment limit."""
        limit = req.limit_bytes
        return all("file" in p and (self.files.root / p["file"]).is_file()
                   and (limit is None or p.get("size", 0) <= limit) for p in parts)

    async def notify(self, user_id: int, text: str) -> None:
        """A DM (a user who shares no server with the bot, or blocks DMs, refuses it)."""
        direct = await _translated(self.client.create_dm(discord.Object(user_id)))
        await _translated(direct.send(fit(self.markup.escape, (text,), self.markup.measure, self.markup.message_limit)))

    # -- the status message
    async def _status(self, req: Request, view: StatusView) -> None:
        if req.status["mode"] == Mode.NOWHERE:
            return
        message: dict[str, Any] = {"content": view.text, "view": buttons_of(view)}
        if req.status["mode"] == Mode.WEBHOOK:
            aged = not token_alive(req)
            if not aged and (message_id := req.status.get("message_id")) is not None:
                with contextlib.suppress(TokenGone):
                    await self._by_token(self._webhook(req).edit_message(message_id, **message))
                    return
            await self._leave_token(req, say_so=aged)
        message_id, channel_id = req.status.get("message_id"), req.status.get("channel_id")
        if message_id is None or channel_id is None:
            if not view.done:  # a finished delivery needs no new message: the MP3 says it
                sent = await self._send_outside(req, lambda: dict(message))
                req.status["message_id"] = sent.id
            return
        place = self.client.get_partial_messageable(channel_id)
        try:
            await _translated(place.get_partial_message(message_id).edit(
                **self._mentioning(req, message)))
        except discord.NotFound as error:
            raise MessageGone from error
        except discord.Forbidden:  # the channel stopped letting us in: go on in a DM
            self._move(req, Mode.DM, None)
            await self._status(req, view)

    # -- files
    async def _send_files(self, req: Request, files: list[tuple[Path, str]], text: str,
                          buttons: discord.ui.View | None = None) -> None:
        """One message with these files (path, name shown) and any `buttons`, by token while it lives, else
        outside."""
        def message() -> dict[str, Any]:  # fresh File objects for each try: a sent one is closed
            sent = {"content": text, "files": [discord.File(path, filename=name) for path, name in files]}
            return {**sent, "view": buttons} if buttons else sent

        if req.status.get("mode", Mode.WEBHOOK) == Mode.WEBHOOK:
            aged = not token_alive(req)
            if not aged:
                try:
                    await self._by_token(self._webhook(req).send(wait=True, **message()))
                    return
                except TokenGone:
                    pass
                except ChatGone:
                    raise
                except MessageGone:  # its first message was deleted: Discord takes no followups of it any more
                    log.info("the interaction of %s lost its message; going on in the channel", req.id)
            await self._leave_token(req, say_so=aged)
        await self._send_outside(req, message)

    # -- places
    async def _leave_token(self, req: Request, say_so: bool) -> None:
        """From now on the channel; a status message left behind says so while the token still lets us."""
        message_id = req.status.get("message_id")
        if say_so and message_id and req.where.get("token"):
            with contextlib.suppress(discord.HTTPException, TokenGone, MessageGone, RateLimited):
                said = "⏩ " + i18n.get(req.lang or self.default_language).gettext(HANDED_OVER)
                await self._by_token(self._webhook(req).edit_message(message_id, content=said, view=None))
        self._move(req, Mode.CHANNEL, req.chat_id)

    async def _send_outside(self, req: Request, message: Callable[[], dict[str, Any]]) -> discord.Message:
        """A new message with the bot's token: into the channel, or by DM when the channel refuses."""
        if req.status.get("mode") != Mode.DM:
            try:
                sent = await _translated(self.client.get_partial_messageable(req.chat_id).send(
                    **self._mentioning(req, message())))
                self._move(req, Mode.CHANNEL, req.chat_id)
                return sent
            except discord.Forbidden:
                log.info("channel %s refuses the bot; telling user %s by DM", req.chat_id, req.user_id)
        direct = await _translated(self.client.create_dm(discord.Object(req.user_id)))
        try:
            sent = await _translated(direct.send(**message()))
        except discord.Forbidden as error:
            self._move(req, Mode.NOWHERE, None)
            raise ChatGone(f"neither channel {req.chat_id} nor a DM takes messages for user {req.user_id}") from error
        self._move(req, Mode.DM, direct.id)
        return sent

    @staticmethod
    def _move(req: Request, mode: Mode, channel_id: int | None) -> None:
        """The request's messages go to another place from now on; its status message stays behind."""
        status = req.status or {"mode": Mode.WEBHOOK}
        if status.get("mode") == mode and status.get("channel_id") == channel_id:
            return
        earlier = list(status.get("earlier", []))
        if message_id := status.get("message_id"):
            earlier.append(message_id)
        req.status = {"mode": mode, "channel_id": channel_id, "message_id": None, "earlier": earlier}

    @staticmethod
    def _mentioning(req: Request, message: dict[str, Any]) -> dict[str, Any]:
        """In the channel the message names its requester, who alone is pinged."""
        if req.status.get("mode") == Mode.DM or "content" not in message:
            return message
        content = f"<@{req.user_id}> {message['content']}"  # the markup left room for it
        return {**message, "content": content,
                "allowed_mentions": discord.AllowedMentions(everyone=False, roles=False,
                                                            users=[discord.Object(req.user_id)])}

    def _webhook(self, req: Request) -> discord.Webhook:
        return discord.Webhook.partial(int(req.where["app_id"]), req.where["token"], client=self.client)

    async def _by_token(self, call: Awaitable[T]) -> T:
        """A call through the interaction token; its refusal is TokenGone."""
        try:
            return await _translated(call)
        except discord.HTTPException as error:
            if error.status == 404 and error.code == UNKNOWN_MESSAGE:
                raise MessageGone from error
            if error.status in (401, 404) or error.code in TOKEN_CODES:
                log.info("interaction token refused (%s %s); going on in the channel", error.status, error.code)
                raise TokenGone from error
            raise


async def _translated(call: Awaitable[T]) -> T:
    """A Discord call, its rate limit turned into the throttle's word."""
    with _rate_limits():
        return await call


@contextlib.contextmanager
def _rate_limits() -> Iterator[None]:
    try:
        yield
    except discord.RateLimited as error:
        metrics.api_error("discord", error)
        raise RateLimited(error.retry_after) from error
    except discord.HTTPException as error:
        metrics.api_error("discord", error)
        if error.status == 429:
            raise RateLimited(1.0) from error
        if error.status == 404 and error.code == UNKNOWN_CHANNEL:  # deleted, with every message in it
            raise ChatGone(f"channel gone: {error.text or error}") from error
        raise
