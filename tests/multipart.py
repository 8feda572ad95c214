"""Multipart form parts named as a full HTTP server names them (shared by the fake servers).

aiohttp's own Content-Disposition parser gives up on a quoted file name that holds "; " followed
by a character such as a backtick (it then reports no name and no file name); the real APIs take
such names, so the fakes parse the header with the standard library instead.
"""

from __future__ import annotations

import email.message
import email.utils


def disposition(header: str) -> tuple[str, str | None]:
    """(name, filename) of a Content-Disposition header; filename None for a plain field."""
    message = email.message.Message()
    message["Content-Disposition"] = header
    name = message.get_param("name", "", header="content-disposition")
    filename = message.get_param("filename", None, header="content-disposition")
    return (email.utils.collapse_rfc2231_value(name),  # type: ignore[arg-type]
            None if filename is None else email.utils.collapse_rfc2231_value(filename))  # type: ignore[arg-type]
