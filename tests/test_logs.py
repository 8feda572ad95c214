"""Secrets never reach the logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from common.logs import setup_logging


@pytest.fixture
def own_logging() -> Iterator[None]:
    """setup_logging replaces the root handlers: give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("own_logging")
def test_tokens_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("test", secrets=["my-discord-bot-token.secret"])
    log = logging.getLogger("test.logs")
    log.warning("POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe")
    log.warning("token %s in use", "my-discord-bot-token.secret")
    log.warning("PATCH /api/v10/webhooks/1000/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQ/messages/@original")
    try:
        raise RuntimeError("failed with my-discord-bot-token.secret")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    for secret in ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "my-discord-bot-token.secret", "aW50ZXJhY3Rpb24"):
        assert secret not in err
    assert "webhooks/1000/***" in err and "boom" in err and "RuntimeError" in err
