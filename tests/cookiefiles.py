"""Cookie files for tests, in the Netscape format browsers' "cookies.txt" exporters write.

Every value contains SECRET, so a test can assert that no value ever reaches a message or a log.
"""

from __future__ import annotations

import time
from pathlib import Path

SECRET = "s3cr3t-cookie-value"
HEADER = "# Netscape HTTP Cookie File\n# https://curl.haxx.se/rfc/cookie_spec.html\n\n"
LOGIN_NAMES = ("SID", "HSID", "SSID", "APISID", "SAPISID", "__Secure-1PSID", "__Secure-3PSID",
               "__Secure-1PAPISID", "__Secure-3PAPISID", "LOGIN_INFO")


def line(name: str, expires: float, domain: str = ".youtube.com", secure: bool = True, httponly: bool = False) -> str:
    flag = "TRUE" if domain.startswith(".") else "FALSE"
    prefix = "#HttpOnly_" if httponly else ""
    return f"{prefix}{domain}\t{flag}\t/\t{'TRUE' if secure else 'FALSE'}\t{int(expires)}\t{name}\t{SECRET}-{name}\n"


def cookies_text(login: bool = True, expires: float | None = None, others: int = 2) -> str:
    """A signed-in YouTube export (or, with login=False, only consent/preference cookies)."""
    expires = time.time() + 300 * 86400 if expires is None else expires
    lines = [line(f"PREF{i}", time.time() + 400 * 86400) for i in range(others)]
    if login:
        lines += [line(name, expires, httponly=name in ("HSID", "SSID")) for name in LOGIN_NAMES]
    return HEADER + "".join(lines)


def write_cookies(path: Path, text: str | None = None, mode: int = 0o600, **kwargs: object) -> Path:
    path.write_text(cookies_text(**kwargs) if text is None else text)  # type: ignore[arg-type]
    path.chmod(mode)
    return path
