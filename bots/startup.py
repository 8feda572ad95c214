"""Start-up that explains itself, the same for both bots.

A token the platform refuses will not become valid by trying again: one line says
so and the process ends with ``os.EX_CONFIG`` (78), which ``python -m bots up``
takes as "do not start again". An API that does not answer is tried again with a
growing delay, one line per try naming the delay, never a traceback.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
STEADY = 60.0  # a run this long was a success: the next failure starts the delays again

REFUSED = os.EX_CONFIG  # the exit status of a bot whose token was refused


def keep_trying(run: Callable[[], None], *, refused: tuple[type[BaseException], ...],
                unreachable: tuple[type[BaseException], ...], what: str, fix: str, log: logging.Logger) -> int:
    """Call `run` until it returns; a refusal ends at once, an unreachable API is tried again with backoff."""
    from common import context  # here, not above: the launcher reads REFUSED without loading Redis's client

    delay = FIRST_DELAY
    while True:
        began = time.monotonic()
        context.async_redis_client.cache_clear()  # an asyncio client belongs to the loop of the try that made it
        try:
            run()
            return 0
        except refused as error:
            log.error("%s refused the token (%s): %s. Not trying again.", what, _reason(error), fix)
            return REFUSED
        except unreachable as error:
            if time.monotonic() - began > STEADY:
                delay = FIRST_DELAY
            log.warning("%s does not answer (%s); trying again in %.0f s", what, _reason(error), delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)


class OneLine(logging.Filter):
    """A library's log record of a network error, told in one line with its cause instead of a traceback
    (discord.py logs each gateway reconnection so, PTB a failed last poll at shutdown)."""

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, self.errors):
            record.msg, record.args = f"{record.getMessage().splitlines()[0]} ({_reason(error)})", None
            record.exc_info, record.exc_text = None, None
        return True


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def languages(log: logging.Logger) -> int:
    """Compile the message catalogs before taking any link: 0, or REFUSED after one line naming a broken one."""
    from common import i18n

    try:
        counts = i18n.load_all()
    except ValueError as error:
        log.error("%s. Not starting.", error)
        return REFUSED
    log.debug("languages: %s", ", ".join(f"{code} ({n} messages)" if n else code for code, n in counts.items()))
    return 0
