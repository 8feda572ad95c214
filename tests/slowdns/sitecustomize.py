"""Test-only stand-in for a slow DNS server, loaded into a bot process through PYTHONPATH.

Names ending in ``.hang.test`` take until the file ``SLOW_DNS_RELEASE`` exists (at most two
minutes) and then do not resolve; every lookup of a ``.test`` name is appended to ``SLOW_DNS_LOG``.
Every other name goes to the real resolver. Nothing of this is in the project's own code.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.endswith(".test"):
        with open(os.environ["SLOW_DNS_LOG"], "a") as log:
            log.write(name + "\n")
    if name.endswith(".hang.test"):
        release = Path(os.environ["SLOW_DNS_RELEASE"])
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real_getaddrinfo(host, *args, **kwargs)


if os.environ.get("SLOW_DNS_LOG"):
    socket.getaddrinfo = _getaddrinfo
