"""Settings: defaults in settings.toml, every key overridable by an environment variable.

The TOML file is ``$SETTINGS_FILE`` (default ``./settings.toml``); keys are the field
names below, environment variables the same names in upper case.  Lists in the
environment are comma-separated.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from common import i18n
from common.urlguard import Allowlist

IntList = Annotated[list[int], NoDecode]
StrList = Annotated[list[str], NoDecode]
ExtractorArgs = Annotated[list[str], NoDecode]  # "IE_KEY:ARG=VAL,VAL;ARG=VAL": commas inside, so split on spaces
PositiveInt = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0)]

MB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", case_sensitive=False)

    # Where things live
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "ytmp3:"
    temp_dir: Path = Path("data/tmp")
    storage_dir: Path = Path("data/out")

    # Workers
    download_concurrency: PositiveInt = 4
    conversion_concurrency: PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    cleanup_concurrency: PositiveInt = 1
    soft_time_limit: Seconds = 25 * 60
    time_limit: Seconds = 30 * 60
    max_retries: Annotated[int, Field(ge=0)] = 3
    retry_backoff: Seconds = 5.0  # first retry delay; doubles each time, with jitter
    retry_backoff_max: Seconds = 120.0
    heartbeat_timeout: Seconds = 30.0  # a running stage silent this long is taken up again

    # What a job may be
    max_duration: PositiveInt = 3 * 3600
    max_filesize: PositiveInt = 2000 * MB
    max_page_bytes: PositiveInt = 16 * MB  # pages, manifests, JSON: decoded size (gzip, deflate, brotli undone)
    playlist: Literal["refuse", "first", "album"] = "album"  # album: every entry (up to playlist_max) as a track
    playlist_max: PositiveInt = 50
    album_confirm: Annotated[int, Field(ge=0)] = 10  # an album of more tracks waits for its requester's yes; 0: never
    mp3_bitrate: PositiveInt = 192
    split_chapters: bool = False  # a user's default for splitting a source with chapters into one MP3 each
    loudness: float | None = None  # "off" (None), or a LUFS target such as -14: every job's default
    min_bitrate: PositiveInt = 64
    default_language: str = "en"  # for users who chose none and whose client names none we speak (common/i18n.py)
    socket_timeout: Seconds = 20.0
    min_download_rate: Annotated[int, Field(ge=0)] = 20 * 1024  # bytes/s a download keeps up past slow_grace; 0: off
    slow_grace: Seconds = 30.0  # seconds a download may start slowly, and the stretch its pace is judged over
    progress_interval: Seconds = 0.5  # workers publish progress at most this often

    # Disk: new jobs are refused when a folder holds this much, or the disk has less free
    max_temp_bytes: PositiveInt = 20_000 * MB
    max_storage_bytes: PositiveInt = 20_000 * MB
    min_free_bytes: PositiveInt = 1_000 * MB

    # Housekeeping
    job_ttl: PositiveInt = 7 * 24 * 3600
    file_ttl: PositiveInt = 6 * 3600
    sweep_interval: Seconds = 600.0

    # Metrics: a Prometheus exporter (`python -m tasks metrics`) on this port; off when unset
    metrics_port: Annotated[int, Field(gt=0, lt=65536)] | None = None
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 to be scraped from other machines

    # Network guard
    network_allowlist: StrList = []
    domains_allow: StrList = []
    domains_deny: StrList = []

    # YouTube on a server: the means a datacenter address needs (see the README's "YouTube on a server")
    pot_provider_url: str | None = None  # bgutil PO-token provider, e.g. http://pot:4416 (the guard lets it through)
    cookies_file: StrList = []  # Netscape cookie files; several make a pool (a stale set is skipped)
    proxy_url: StrList = []  # http://, https://, socks5:// proxies; several make a pool with failover
    proxy_only: bool = False  # never download directly, only through PROXY_URL
    route_rest: Seconds = 900.0  # a proxy or cookie set that keeps failing rests this long before it is tried again
    ytdlp_extractor_args: ExtractorArgs = []  # as yt-dlp's --extractor-args; several separated by spaces
    alert_interval: Seconds = 3600.0  # at most one admin alert of each kind this often
    rate_limit_backoff: Seconds = 900.0  # a site that rate-limits us gets no new download for this long

    # Chat limits
    user_concurrent_jobs: PositiveInt = 2
    user_jobs_per_hour: PositiveInt = 20
    queue_cap: PositiveInt = 200
    links_per_message: PositiveInt = 3
    dns_timeout: Seconds = 10.0  # a link's host name must resolve this fast for a bot to take it

    # Telegram
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    telegram_admin_ids: IntList = []
    telegram_upload_limit: PositiveInt | None = None  # default: 50 MB, or 2000 MB through a self-hosted server
    telegram_group_links: bool = False  # react to plain links in groups, not only /mp3
    telegram_delete_status: bool = False  # remove the status message after delivery
    telegram_rate: Annotated[float, Field(gt=0)] = 30.0  # Bot API calls a second into chats, the whole bot

    # Discord
    discord_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_id: int | None = None
    discord_admin_ids: IntList = []
    discord_cache_bytes: PositiveInt = 2000 * MB

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in ("redis", "rediss", "unix") or not (url.hostname or url.path):
            raise ValueError("must look like redis://host:6379/0")
        return value

    @field_validator(
        "network_allowlist", "domains_allow", "domains_deny", "cookies_file", "proxy_url",
        "telegram_admin_ids", "discord_admin_ids", mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("ytdlp_extractor_args", mode="before")
    @classmethod
    def _space_list(cls, value: object) -> object:
        return value.split() if isinstance(value, str) else value

    @field_validator("ytdlp_extractor_args")
    @classmethod
    def _extractor_args(cls, value: list[str]) -> list[str]:
        for entry in value:  # the shape yt-dlp's option parser wants (yt_dlp/options.py:277); it parses the rest
            if not re.fullmatch(r"[\w-]+:.+", entry, re.DOTALL):
                raise ValueError(f"{entry!r} is not IE_KEY:ARG=VALUE (as yt-dlp's --extractor-args)")
        return value

    @field_validator("loudness", mode="before")
    @classmethod
    def _loudness(cls, value: object) -> float | None:
        return loudness_target(value)

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        code = i18n.pick(value, default="")
        if not code:
            raise ValueError(f"must be one of {', '.join(i18n.LANGUAGES)}")
        return code

    @field_validator("pot_provider_url")
    @classmethod
    def _pot_provider_url(cls, value: str | None) -> str | None:
        if value:
            url = urlparse(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError("must look like http://pot:4416")
        return value or None

    @field_validator("proxy_url")
    @classmethod
    def _proxy_urls(cls, value: list[str]) -> list[str]:
        for entry in value:
            url = urlparse(entry)
            if url.scheme not in ("http", "https", "socks5", "socks5h") or not url.hostname:
                raise ValueError("each proxy must look like http://host:3128 or socks5://host:1080")
        return value

    @field_validator("network_allowlist")
    @classmethod
    def _allowlist(cls, value: list[str]) -> list[str]:
        Allowlist(value)  # a bad entry stops the program here, not every job later
        return value

    @model_validator(mode="after")
    def _proxy_only_needs_proxies(self) -> Settings:
        if self.proxy_only and not self.proxy_url:
            raise ValueError("proxy_only needs at least one proxy in proxy_url")
        return self

    @property
    def telegram_is_local(self) -> bool:
        """A self-hosted Bot API server lifts the upload limit to 2000 MB."""
        return not self.telegram_api_url.startswith("https://api.telegram.org/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_file()
        if "SETTINGS_FILE" in os.environ and not toml_file.is_file():
            raise OSError("no such file")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))


LOUDNESS_RANGE = (-40.0, -5.0)  # LUFS: from very quiet speech to the loudest masters


def loudness_target(value: object) -> float | None:
    """A loudness as LOUDNESS (or --loudness) gives it: "off" (or empty) is None, else a LUFS target in
    LOUDNESS_RANGE; ValueError with the reason otherwise."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "off", "none")):
        return None
    try:
        target = float(str(value).strip().removesuffix("LUFS").strip()) if not isinstance(value, bool) else None
    except ValueError:
        target = None
    low, high = LOUDNESS_RANGE
    if target is None or not low <= target <= high:
        raise ValueError(f"must be off or a LUFS target from {low:g} to {high:g}, such as -14")
    return target


def settings_file() -> Path:
    return Path(os.environ.get("SETTINGS_FILE", "settings.toml"))


class SettingsError(SystemExit):
    """Raised (and exits the program) when the settings are invalid."""


def describe(error: ValidationError) -> str:
    """One line naming each bad key, for a human at a terminal."""
    parts = []
    for item in error.errors():
        key = ".".join(str(loc) for loc in item["loc"]) or "settings"
        parts.append(f"{key}: {item['msg']}" if item["type"] != "extra_forbidden" else f"{key}: unknown key")
    return "invalid settings: " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; an invalid value ends the program with one clear line."""
    try:
        return Settings()
    except ValidationError as error:
        print(describe(error), file=sys.stderr)
        raise SettingsError(2) from None
    except (OSError, ValueError) as error:  # unreadable or malformed TOML
        print(f"invalid settings file {settings_file()}: {error}", file=sys.stderr)
        raise SettingsError(2) from None
