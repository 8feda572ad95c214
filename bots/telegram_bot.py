"""The Telegram bot: python-telegram-bot wired to the shared core."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from functools import wraps
from pathlib import Path
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    InputMediaAudio,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots import admin, startup
from bots.core import BotCore, Request, Status, Where, cover_of
from bots.telegram_pacer import Pacer
from bots.throttle import ChatGone, MessageGone, Priority, RateLimited
from common import cookies, i18n, metrics, usersettings
from common.albums import entries_in
from common.clip import Clip, RangeError, links_with_ranges, parse_range
from common.errors import sentences
from common.i18n import N_
from common.jobs import Job
from common.links import find_links
from common.logs import setup_logging
from common.render import Button, HtmlMarkup, StatusView, caption, track
from common.settings import Settings, get_settings
from common.textlimits import cut, fit, utf16_len
from common.usersettings import UserSettings

log = logging.getLogger("bots.telegram")

COOKIES_HOW = N_("To replace %(file)s: send the new cookies.txt to me in this private chat as a file with the "
                 "caption /cookies.")
# Cookies sent in a group: whether the bot could take the message down.
COOKIES_IN_GROUP = {
    True: N_("Not installed: cookies sent in a group are seen by everyone there. I deleted the message. Sign that "
             "browser session out so those cookies stop working, export fresh ones and send them to me here as a "
             "file with the caption /cookies."),
    False: N_("Not installed: cookies sent in a group are seen by everyone there. Please delete the message (I "
              "could not). Sign that browser session out so those cookies stop working, export fresh ones and send "
              "them to me here as a file with the caption /cookies."),
}
ADMINS_ONLY = N_("Sorry, that command is for the bot's admins only.")
SORRY = N_("Something went wrong on our side; please try again.")
# The command list Telegram shows (setMyCommands), in each language we have a catalog for.
# i18n: Telegram's command list: short descriptions, lower case, after the command's name
COMMANDS = (("mp3", N_("convert a link to MP3")), ("bitrate", N_("set your MP3 quality")),
            ("settings", N_("your quality, loudness, chapters and albums")),
            ("language", N_("the language I answer you in")), ("help", N_("what this bot does")))
CLOUD_UPLOAD_LIMIT = 50 * 1024 * 1024
LOCAL_UPLOAD_LIMIT = 2000 * 1024 * 1024


class TelegramAdapter:
    platform = "telegram"
    markup = HtmlMarkup()

    def __init__(self, app: Application, settings: Settings, pacer: Pacer) -> None:
        self.app = app
        self.settings = settings
        self.pacer = pacer

    def room(self, chat_id: int, priority: Priority) -> bool:
        return self.pacer.room(chat_id, priority)

    @property
    def upload_limit(self) -> int:
        if self.settings.telegram_upload_limit:
            return self.settings.telegram_upload_limit
        return LOCAL_UPLOAD_LIMIT if self.settings.telegram_is_local else CLOUD_UPLOAD_LIMIT

    async def post_status(self, req: Request, view: StatusView) -> Status:
        message = await _call(self.app.bot.send_message(
            req.chat_id, view.text, parse_mode=ParseMode.HTML, reply_markup=_keyboard(view),
            reply_parameters=_reply_to(req), disable_notification=True,
        ))
        return {"chat_id": message.chat_id, "message_id": message.message_id}

    async def edit_status(self, req: Request, view: StatusView) -> None:
        if not req.status:
            return
        if view.done and self.settings.telegram_delete_status and not view.buttons:
            await _call(self.app.bot.delete_message(req.chat_id, req.status["message_id"]))
            return
        await _call(self.app.bot.edit_message_text(
            view.text, req.chat_id, req.status["message_id"], parse_mode=ParseMode.HTML,
            reply_markup=_keyboard(view),
        ))

    async def upload(self, req: Request, job: Job, part: int) -> dict[str, Any]:
        path = Path(job.files[part])
        lang = i18n.get(req.lang)
        title, suffix, seconds = track(job, part, lang)
        cover = cover_of(job)
        with path.open("rb") as audio:  # streamed as it is sent, never read whole (up to 2000 MB)
            message = await _call(self.app.bot.send_audio(
                req.chat_id, InputFile(audio, filename=path.name, read_file_handle=False), title=title + suffix,
                performer=job.uploader or None,
                duration=round(seconds) if seconds else None, thumbnail=cover.read_bytes() if cover else None,
                caption=caption(title, job.url, self.markup, lang, suffix), parse_mode=ParseMode.HTML,
                reply_parameters=_reply_to(req), write_timeout=600, read_timeout=120,
            ))
        return {"file_id": message.audio.file_id, "title": title, "suffix": suffix, "url": job.url}

    async def upload_group(self, req: Request, files: list[tuple[Job, int]]) -> None:
        """Several MP3s as one album message (sendMediaGroup: 2 to 10 audios), in the order given."""
        lang = i18n.get(req.lang)
        with contextlib.ExitStack() as stack:
            media = []
            for job, part in files:
                path = Path(job.files[part])
                title, suffix, seconds = track(job, part, lang)
                cover = cover_of(job)
                audio = stack.enter_context(path.open("rb"))  # streamed as it is sent, never read whole
                media.append(InputMediaAudio(
                    # attach: each file goes as a part of its own that the media list names
                    InputFile(audio, filename=path.name, attach=True, read_file_handle=False), title=title + suffix,
                    performer=job.uploader or None, duration=round(seconds) if seconds else None,
                    thumbnail=cover.read_bytes() if cover else None,
                    caption=caption(title, job.url, self.markup, lang, suffix), parse_mode=ParseMode.HTML))
            await _call(self.app.bot.send_media_group(req.chat_id, media, reply_parameters=_reply_to(req),
                                                      write_timeout=600, read_timeout=120))

    def cached_usable(self, req: Request, parts: list[dict[str, Any]]) -> bool:
        """A Telegram file id works in any chat, whatever its size."""
        return True

    @property
    def admin_ids(self) -> list[int]:
        return self.settings.telegram_admin_ids

    async def notify(self, user_id: int, text: str) -> None:
        await _call(self.app.bot.send_message(user_id, cut(text, self.markup.message_limit, utf16_len)))  # plain

    async def send_cached(self, req: Request, part: dict[str, Any], buttons: StatusView | None = None) -> bool:
        text = caption(part["title"], req.url, self.markup, i18n.get(req.lang), part.get("suffix", ""))
        try:
            await _call(self.app.bot.send_audio(
                req.chat_id, part["file_id"], caption=text, parse_mode=ParseMode.HTML, reply_parameters=_reply_to(req),
                reply_markup=_keyboard(buttons) if buttons else None,
            ))
        except BadRequest as error:  # the file id is no longer valid
            log.warning("cached file rejected: %s", error)
            return False
        return True


def _message(update: Update) -> Message:
    """The message a command or text handler was called for (PTB calls them for messages only)."""
    if update.effective_message is None:
        raise LookupError(f"update {update.update_id} has no message")
    return update.effective_message


def _user_id(update: Update) -> int:
    """Who sent it (a channel's own post has none: the error handler logs it, as any failed update)."""
    if update.effective_user is None:
        raise LookupError(f"update {update.update_id} has no user")
    return update.effective_user.id


def _reply_to(req: Request) -> ReplyParameters | None:
    message_id = req.where.get("message_id")
    return ReplyParameters(message_id, allow_sending_without_reply=True) if message_id else None


def _keyboard(view: StatusView) -> InlineKeyboardMarkup | None:
    if not view.buttons:
        return None
    row = [InlineKeyboardButton(view.label(b), callback_data=f"{b}:{view.job_id}") for b in view.buttons]
    return InlineKeyboardMarkup([row])


def _settings_keyboard(user_id: int, rows: list[list[tuple[str, str, str]]]) -> InlineKeyboardMarkup:
    """usersettings' rows of (field, value, label) as buttons that name their owner."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=f"set:{user_id}:{name}:{value}")
                                  for name, value, label in row] for row in rows])


def _commands(lang: i18n.Lang) -> list[BotCommand]:
    return [BotCommand(name, lang.gettext(about)) for name, about in COMMANDS]


async def _call(request: Any) -> Any:
    """One Bot API call, its errors turned into the throttle's words."""
    try:
        return await request
    except RetryAfter as error:
        metrics.api_error("telegram", error)
        wait = error.retry_after
        raise RateLimited(wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)) from error
    except BadRequest as error:
        text = str(error).lower()
        if "not modified" in text:
            return None
        metrics.api_error("telegram", error)
        if "chat not found" in text:
            raise ChatGone(str(error)) from error
        if "not found" in text or "can't be edited" in text:
            raise MessageGone from error
        raise
    except Forbidden as error:  # blocked by the user, kicked from the group, not a member of the channel
        metrics.api_error("telegram", error)
        raise ChatGone(str(error)) from error
    except TelegramError as error:
        metrics.api_error("telegram", error)
        raise


class TelegramBot:
    """Handlers: each one small, the core does the work."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value() if settings.telegram_token else "")
            .base_url(settings.telegram_api_url)
            .base_file_url(settings.telegram_file_url)
            .concurrent_updates(True)
            .rate_limiter(pacer := Pacer(settings.telegram_rate))
            .post_init(self._started)
            .post_shutdown(self._stopped)
            .build()
        )
        self.adapter = TelegramAdapter(self.app, settings, pacer)
        self.core = BotCore(self.adapter, settings)
        self._wire()

    def _wire(self) -> None:
        add = self.app.add_handler
        add(CommandHandler(["start", "help"], self.help))
        add(CommandHandler("mp3", self.mp3))
        add(CommandHandler("bitrate", self.bitrate))
        add(CommandHandler("settings", self.user_settings))
        add(CommandHandler("language", self.language))
        for name in ("stats", "job", "dead", "retry", "cancel", "purge", "cookies", "health"):
            add(CommandHandler(name, self.admin_only(getattr(self, f"admin_{name}"))))
        add(MessageHandler(filters.Document.ALL & filters.CaptionRegex(r"^/cookies(@\w+)?(\s|$)"),
                           self.admin_only(self.admin_cookies)))
        add(CallbackQueryHandler(self.button))
        add(MessageHandler(filters.TEXT & ~filters.COMMAND, self.text))
        self.app.add_error_handler(self.on_error)

    async def _started(self, app: Application) -> None:
        default = _commands(i18n.get(self.settings.default_language))
        await app.bot.set_my_commands(default)
        for code in i18n.LANGUAGES:  # Telegram picks the list by the app's language (two letters: "pt")
            listed = _commands(i18n.get(code))
            if [c.description for c in listed] != [c.description for c in default]:
                await app.bot.set_my_commands(listed, language_code=code.split("_")[0])
        self.core.start()

    async def _stopped(self, app: Application) -> None:
        await self.core.stop()

    def is_admin(self, user_id: int | None) -> bool:
        return admin.is_admin(user_id, self.settings.telegram_admin_ids)

    def admin_only(self, handler: Any) -> Any:
        @wraps(handler)
        async def checked(update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
            if not self.is_admin(update.effective_user.id if update.effective_user else None):
                await self.reply(update, (await self._lang(update)).gettext(ADMINS_ONLY))
                return
            await handler(update, ctx)

        return checked

    # -- the user's language
    async def _speaker(self, update: Update) -> tuple[UserSettings, i18n.Lang]:
        """Who wrote: their settings, and the language to answer them in (their /language, else their app's)."""
        record = await self._settings(_user_id(update))
        return record, self._lang_of(record, update)

    def _lang_of(self, record: UserSettings, update: Update) -> i18n.Lang:
        client = update.effective_user.language_code if update.effective_user else None
        return i18n.get(self.core.language(record, client))

    async def _lang(self, update: Update) -> i18n.Lang:
        if update.effective_user is None:  # a channel's own post: nobody's choice to read
            return i18n.get(self.settings.default_language)
        return (await self._speaker(update))[1]

    # -- users
    async def help(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/start and /help: what the bot does and its limits."""
        s = self.settings
        record, lang = await self._speaker(update)
        ranges = [lang.ltr(r) for r in ("1:30-4:05", "90-245", "-4:05", "1:30-")]
        lines = [
            lang.gettext("Send me a link to a video (YouTube and many other sites) and I'll send back its audio "
                         "as an MP3."),
            "",
            lang.gettext("Videos up to %(duration)s long", duration=lang.ltr(lang.duration(s.max_duration))),
            lang.gettext("Files up to %(size)s (longer ones come in parts)",
                         size=lang.ltr(lang.size(self.adapter.upload_limit))),
            lang.ngettext("%(n)s conversion at once, %(hourly)s per hour", "%(n)s conversions at once, %(hourly)s "
                          "per hour", s.user_concurrent_jobs, hourly=s.user_jobs_per_hour),
            lang.gettext("/settings: your quality (now %(rate)s kbit/s), loudness, chapter splitting and albums; "
                         "/bitrate 128|192|320 for short", rate=record.bitrate),
            lang.gettext("/language: the language I answer you in (now %(language)s)",
                         language=lang.ltr(i18n.LANGUAGES[lang.code])),
            lang.gettext("Only a part: the link, then the range (%(a)s, %(b)s, %(c)s or %(d)s)",
                         **dict(zip("abcd", ranges, strict=True))),
            lang.gettext("In groups: /mp3 <link> [range], or reply /mp3 to a message with a link"),
        ]
        await self.reply(update, "\n".join(lines[:2] + [f"• {line}" for line in lines[2:]]))

    async def mp3(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/mp3 <link> [range], or /mp3 [range] as a reply to a message holding a link."""
        message = _message(update)
        words = " ".join(ctx.args or [])
        try:
            asked = links_with_ranges(words, strict=True)
            if not asked and message.reply_to_message:
                wanted = parse_range(words) if words.strip() else None
                replied = message.reply_to_message.text or message.reply_to_message.caption or ""
                asked = [(link, wanted) for link in find_links(replied)]
        except RangeError as error:
            await self.reply(update, sentences(await self._lang(update), error.said))
            return
        if not asked:
            lang = await self._lang(update)
            await self.reply(update, lang.gettext("Send /mp3 with a link (and a range if you like: /mp3 <link> "
                                                  "1:30-4:05), or reply /mp3 to a message that has one."))
            return
        await self._take(update, asked, entries_in(ctx.args or []))

    async def text(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Plain messages: links, each maybe with a range after it, in private chats (and in groups when
        the setting says so)."""
        message = _message(update)
        private = message.chat.type == ChatType.PRIVATE
        if not private and not self.settings.telegram_group_links:
            return
        try:
            asked = links_with_ranges(message.text or "")
        except RangeError as error:
            await self.reply(update, sentences(await self._lang(update), error.said))
            return
        if asked:
            await self._take(update, asked, entries_in((message.text or "").split()))
        elif private:
            lang = await self._lang(update)
            await self.reply(update, lang.gettext("Send me a link to a video and I'll turn it into an MP3. /help "
                                                  "tells more."))

    async def _take(self, update: Update, asked: list[tuple[str, Clip | None]], items: str = "") -> None:
        """Each link with its range; `items`, a range without colons ("2-5"), picks a playlist's entries too
        (the range then applies to whichever the link turns out to be: a playlist or one video)."""
        message = _message(update)
        most = self.settings.links_per_message
        user_id = _user_id(update)
        chosen, lang = await self._speaker(update)
        if len(asked) > most:
            await self.reply(update, lang.ngettext("I'll take %(n)s link of this message, the first; send the others "
                                                   "again.", "I'll take the first %(n)s links of this message; "
                                                   "send the others again.", most))
        for url, wanted in asked[:most]:
            req = self.core.new_request(url, user_id, message.chat_id, chosen, self.adapter.upload_limit,
                                        {"message_id": message.message_id}, wanted.key if wanted else "",
                                        lang=lang.code)
            req.items = items
            await self.core.take(req)

    async def bitrate(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/bitrate 128|192|320: the quality setting, for short."""
        user_id = _user_id(update)
        choice = ctx.args[0].removesuffix("k") if ctx.args else ""
        record, lang = await self._speaker(update)
        try:
            await self.core.change_setting(user_id, "bitrate", choice)
        except ValueError:
            await self.reply(update, lang.gettext("Your quality is %(rate)s kbit/s. Choose with /bitrate 128, "
                                                  "/bitrate 192 or /bitrate 320 (or in /settings).",
                                                  rate=record.bitrate))
            return
        await self.reply(update, lang.gettext("Done: your MP3s will be %(rate)s kbit/s.", rate=choice))

    async def user_settings(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/settings: one message of toggles, edited in place as they are pressed."""
        record, lang = await self._speaker(update)
        keyboard = _settings_keyboard(_user_id(update), usersettings.choices(record, self.settings, lang))
        await self.reply(update, lang.gettext(usersettings.TITLE), reply_markup=keyboard)

    async def language(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/language: the languages as buttons (each in its own name); /language es sets it at once."""
        user_id = _user_id(update)
        record, lang = await self._speaker(update)
        if not ctx.args:
            keyboard = _settings_keyboard(user_id, usersettings.language_choices(record, lang))
            await self.reply(update, usersettings.language_title(record, lang), reply_markup=keyboard)
            return
        word = " ".join(ctx.args)
        code = usersettings.language_code(word)
        if code is None:
            await self.reply(update, usersettings.language_unknown(word, lang))
            return
        record = await self.core.change_setting(user_id, "language", code)
        await self.reply(update, usersettings.language_saved(record, self._lang_of(record, update)))

    async def _settings(self, user_id: int) -> UserSettings:
        return await self.core.user_settings(user_id)

    async def _settings_pressed(self, update: Update, query: Any, data: str) -> None:
        """A settings toggle or a /language button: only the user whose settings they are may press it."""
        _, owner, name, value = [*data.split(":"), "", "", ""][:4]
        answer, record = await self.core.press_setting(owner, query.from_user.id, name, value)
        if record is None:
            await query.answer((await self._lang(update)).gettext(answer))
            return
        lang = self._lang_of(record, update)  # a new language speaks at once
        lanes = self.core.lanes(query.message.chat_id)
        if name == "language":
            await query.answer(usersettings.language_saved(record, lang))
            keyboard = _settings_keyboard(query.from_user.id, usersettings.language_choices(record, lang))
            title = usersettings.language_title(record, lang)
            await lanes.call(lambda: _call(query.edit_message_text(title, reply_markup=keyboard)))
            return
        await query.answer(lang.gettext(answer))
        keyboard = _settings_keyboard(query.from_user.id, usersettings.choices(record, self.settings, lang))
        await lanes.call(lambda: _call(query.edit_message_reply_markup(keyboard)))

    async def button(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Cancel, Retry, Split, settings, the purge confirmation: each judged from our records, not the data."""
        query = update.callback_query
        if query is None or query.message is None:
            raise LookupError(f"update {update.update_id}: no button press on a message of ours")
        user_id = query.from_user.id
        data = query.data or ""
        if data.startswith("purge:"):
            await self._purge_answer(query, data, user_id, await self._lang(update))
            return
        if data.startswith("set:"):
            await self._settings_pressed(update, query, data)
            return
        message = query.message  # an InaccessibleMessage when it is older than 48 hours
        button, _, job_id = data.partition(":")
        lang = await self._lang(update)
        if button == Button.CANCEL:
            req = self.core.request_by_status(message.chat.id, message.message_id)
            await query.answer(lang.gettext(await self.core.cancel(req, job_id, user_id, self.is_admin(user_id))))
        elif button == Button.START:
            req = self.core.request_by_status(message.chat.id, message.message_id)
            answer = await self.core.start_album(req, job_id, user_id, self.is_admin(user_id))
            await query.answer(lang.gettext(answer))
        elif button in (Button.RETRY, Button.SPLIT):
            async def accepted() -> Where:
                await query.answer(lang.gettext("Trying again…") if button == Button.RETRY
                                   else lang.gettext("Splitting into tracks…"))
                replied = isinstance(message, Message) and message.reply_to_message
                return {"message_id": replied.message_id if replied else None}

            again = self.core.retry if button == Button.RETRY else self.core.split
            refusal = await again(job_id, user_id, self.is_admin(user_id), message.chat.id, accepted,
                                  query.from_user.language_code)
            if refusal:
                await query.answer(lang.gettext(refusal))
        else:
            await query.answer()

    # -- admins, each answered in their own language (`_lang`, as every user is)
    async def admin_stats(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/stats: workers, queues, outcomes, timings, disk and cache."""
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.stats_text, lang))

    async def admin_job(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/job <id>: one job's record."""
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.job_text, (ctx.args or [""])[0], lang))

    async def admin_dead(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/dead [n]: the latest dead letters."""
        count = int(ctx.args[0]) if ctx.args and ctx.args[0].isdigit() else 10
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.dead_text, count, lang))

    async def admin_retry(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/retry <id>: run a failed job again."""
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.retry, (ctx.args or [""])[0], lang))

    async def admin_cancel(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/cancel <id>: stop any job."""
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.cancel, (ctx.args or [""])[0], lang))

    async def admin_health(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/health: the doctor's report (what YouTube downloads need, found or missing)."""
        lang = await self._lang(update)
        await self._pre(update, await self.core.offload(admin.health_text, lang))

    async def admin_purge(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/purge: empty the queues, after a confirmation."""
        lang = await self._lang(update)
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(lang.gettext("Yes, purge"), callback_data="purge:yes"),
                                          InlineKeyboardButton(lang.gettext("No"), callback_data="purge:no")]])
        await self.reply(update, await self.core.offload(admin.purge_question, lang), reply_markup=keyboard)

    async def admin_cookies(self, update: Update, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """/cookies with a cookies.txt attached (or replying to one): replace the cookie file. Alone: show it."""
        message = _message(update)
        holder = message if message.document else message.reply_to_message
        document = holder.document if holder else None
        lang = await self._lang(update)
        if holder is None or document is None:
            await self._private(update, await self.core.offload(admin.cookies_text, COOKIES_HOW, lang))
            return
        if message.chat.type != ChatType.PRIVATE:  # leaked to the group: take it down, never install it
            await self._private(update, lang.gettext(COOKIES_IN_GROUP[await self._delete(holder)]))
            return
        if (document.file_size or 0) > cookies.MAX_BYTES:  # not downloaded at all
            text = admin.cookies_too_large(lang)
        else:
            data = await (await document.get_file()).download_as_bytearray()
            text = await self.core.offload(admin.install_cookies, bytes(data), lang)
        if await self._delete(holder):  # credentials should not stay in the chat's history
            text += "\n" + lang.gettext("I deleted your message with the file.")
        await self._private(update, text)

    async def _delete(self, message: Message) -> bool:
        try:
            await _call(self.app.bot.delete_message(message.chat_id, message.message_id))
        except (TelegramError, MessageGone) as error:
            log.warning("could not delete message %s: %s", message.message_id, error)
            return False
        return True

    async def _private(self, update: Update, text: str) -> None:
        """Answer in the private chat with the user; in a group, point them there if that chat is closed."""
        user_id = _user_id(update)
        try:
            await self.core.lanes(user_id).call(
                lambda: _call(self.app.bot.send_message(user_id, text, disable_web_page_preview=True)))
        except ChatGone:  # the user never started a private chat with the bot (or blocked it)
            await self.reply(update, (await self._lang(update)).gettext(
                "I answer this in a private chat only: start one with me and send it there."))

    async def _purge_answer(self, query: Any, data: str, user_id: int, lang: i18n.Lang) -> None:
        if not self.is_admin(user_id):
            await query.answer(lang.gettext("Sorry, that is for the bot's admins only."))
            return
        if data == "purge:yes":
            text = await self.core.offload(admin.purge, lang)
        else:
            text = lang.gettext("Nothing was purged.")
        await query.answer()
        await self.core.lanes(query.message.chat_id).call(lambda: _call(query.edit_message_text(text)))

    async def reply(self, update: Update, text: str, **options: Any) -> None:
        """Answer in the chat, in its turn (every write into a chat shares that chat's rate)."""
        message = _message(update)
        await self.core.lanes(message.chat_id).call(
            lambda: _call(message.reply_text(text, disable_web_page_preview=True, **options)))

    async def _pre(self, update: Update, text: str) -> None:
        markup = self.adapter.markup
        text = fit(lambda t: f"<pre>{markup.escape(t)}</pre>", (text,), markup.measure, markup.message_limit)
        await self.reply(update, text, parse_mode=ParseMode.HTML)

    async def on_error(self, update: object, ctx: ContextTypes.DEFAULT_TYPE) -> None:
        """Log every error; the user hears a short sentence, never a traceback."""
        error = ctx.error
        if isinstance(error, NetworkError | TimedOut | Forbidden | ChatGone):
            growing = " (polling again with a growing delay, up to 30 s)" if update is None else ""
            log.warning("telegram: %s%s", error, growing)
            return
        log.error("handler failed", exc_info=error)
        if isinstance(update, Update) and update.effective_message and not isinstance(error, TelegramError):
            with contextlib.suppress(TelegramError):
                await self.reply(update, (await self._lang(update)).gettext(SORRY))


async def _reach(settings: Settings, token: str) -> None:
    """getMe once, before PTB's own start: a refused token or an unreachable API shows here, in our words."""
    async with Bot(token, base_url=settings.telegram_api_url, base_file_url=settings.telegram_file_url):
        pass  # entering runs getMe


def main() -> int:
    settings = get_settings()
    setup_logging("telegram", secrets=[settings.telegram_token])
    if not settings.telegram_token:
        log.error("TELEGRAM_TOKEN is not set")
        return 2
    cookies.log_problems(settings.cookies_file, log)
    if broken := startup.languages(log):
        return broken
    token = settings.telegram_token.get_secret_value()
    reached = startup.keep_trying(
        lambda: asyncio.run(_reach(settings, token)), refused=(InvalidToken,), unreachable=(NetworkError,),
        what=f"the Telegram Bot API at {settings.telegram_api_url}",
        fix="put the token @BotFather gave you into TELEGRAM_TOKEN", log=log)
    if reached:
        return reached
    logging.getLogger("telegram.ext.Updater").addFilter(startup.OneLine((NetworkError,)))
    bot = TelegramBot(settings)
    # Network errors after this point: PTB tries again by itself (bootstrap and polling), one line each.
    bot.app.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False, bootstrap_retries=-1)
    return 0

