"""Logging for every process: one line format, tagged with the part, secrets masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from pydantic import SecretStr

_TELEGRAM_TOKEN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{20,}")
# Discord interaction tokens travel in webhook and callback paths (valid 15 minutes).
_INTERACTION_TOKEN = re.compile(r"((?:webhooks|interactions)/\d+/)[\w.-]{20,}")


class Redact(logging.Filter):
    """Replace known secrets, and anything shaped like a Telegram token, with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self._mask(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _INTERACTION_TOKEN.sub(r"\1***", _TELEGRAM_TOKEN.sub("***", text))


def setup_logging(part: str, secrets: Iterable[SecretStr | str | None] = (), level: int = logging.INFO) -> None:
    plain = [s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {part} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(Redact(plain))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "telegram.ext.ExtBot", "discord.client", "discord.gateway", "discord.http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
