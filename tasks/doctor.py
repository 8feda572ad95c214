"""`python -m tasks doctor [--json]`: what this deployment has for YouTube from a server, and what it lacks.

Each check gives one section of the report and, for what is wrong, one line saying
what and how to fix it (a `Msg`: English on the terminal and in the JSON, the admin's
language in /health). A problem that stops YouTube downloads (no JS runtime,
EJS scripts that do not match yt-dlp, no ffmpeg, no Redis, no worker, a configured
PO-token provider or proxy that does not answer) makes the exit status non-zero;
the rest (an old yt-dlp, a cookie file's warnings, expired login cookies among them) are advice.

yt-dlp is asked the way ``yt-dlp -v`` asks it (its runtimes, its challenge
providers, its own check of the EJS scripts), with the options the workers use.
The checks are independent and run side by side, each network wait bounded by
``timeout``, so the whole report takes about that long at most.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import redis
import yt_dlp
from yt_dlp.dependencies import yt_dlp_ejs
from yt_dlp.extractor.youtube.jsc._builtin.ejs import EJSBaseJCP, ScriptSource, ScriptType
from yt_dlp.extractor.youtube.jsc._director import initialize_jsc_director
from yt_dlp.extractor.youtube.pot._registry import _pot_providers
from yt_dlp.globals import all_plugins_loaded
from yt_dlp.plugins import load_all_plugins
from yt_dlp.utils import get_exe_version

from common import i18n, stats
from common.cookies import inspect as inspect_cookies
from common.i18n import N_, Lang, Msg
from common.keys import Keys
from common.routes import SHOWN_SITES, RouteBook
from common.settings import Settings, get_settings
from tasks.download import ydl_options

OLD_AFTER_DAYS = 60  # YouTube changes often; a yt-dlp this old likely misses fixes
POT_PLUGIN = "bgutil:http"
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
SECTIONS = ("yt_dlp", "ejs", "js_runtime", "pot_provider", "cookies", "proxy", "routes", "ffmpeg", "redis", "workers",
            "bots")
NO_PROBLEMS = N_("No problems found.")  # the report's last line when all is well (a worker's summary looks for it)
STALLED_AFTER = 30.0  # seconds: a bot's follow loop turns at least once a second


@dataclass
class Finding:
    """One section of the report: what was found (a summary in it may be a Msg), what is wrong, and whether
    downloads need the fix."""

    data: Any
    problems: list[Msg] = field(default_factory=list)
    blocking: bool = False


@dataclass
class Report:
    sections: dict[str, Any]
    problems: list[Msg]
    ok: bool
    """False when something a YouTube download needs is missing."""

    def as_json(self) -> dict[str, Any]:
        """The sections and problems with every text in English."""
        return _english({**self.sections, "problems": self.problems})


def _english(value: Any) -> Any:
    if isinstance(value, Msg):
        return value.english()
    if isinstance(value, dict):
        return {key: _english(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_english(item) for item in value]
    return value


def examine(settings: Settings | None = None, timeout: float = 3.0, workers: bool = True) -> Report:
    """Run every check side by side; `workers=False` leaves out the workers (a launcher about to start them)."""
    settings = settings or get_settings()
    if not all_plugins_loaded.value:  # before the checks run side by side: the PO-token plugin registers itself
        load_all_plugins()
    checks: dict[str, Callable[[], Finding]] = {
        "yt_dlp+": lambda: _ytdlp_and_js(settings),
        "pot_provider": lambda: pot_provider(settings.pot_provider_url, timeout),
        "cookies": lambda: cookies(settings.cookies_file),
        "proxy": lambda: proxies(settings.proxy_url, timeout),
        "routes": lambda: routes(settings, timeout),
        "ffmpeg": ffmpeg,
        "redis": lambda: redis_and_workers(settings, timeout, workers),
    }
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="doctor") as pool:
        futures = {name: pool.submit(check) for name, check in checks.items()}
        found = {name: future.result() for name, future in futures.items()}
    sections: dict[str, Any] = {**found["yt_dlp+"].data, **found["redis"].data}
    for name in ("pot_provider", "cookies", "proxy", "routes", "ffmpeg"):
        sections[name] = found[name].data
    ordered = {name: sections[name] for name in SECTIONS}
    problems = [line for finding in found.values() for line in finding.problems]
    return Report(ordered, problems, ok=not any(finding.blocking for finding in found.values()))


# -- yt-dlp, EJS and the JS runtime ------------------------------------------------------------------------------


class _Collect:
    """A yt-dlp logger that keeps the warnings (the reasons it gives for refusing a script)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def debug(self, msg: str) -> None:
        pass

    info = debug

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)

    error = warning


def _ytdlp_and_js(settings: Settings) -> Finding:
    """yt-dlp's version, the JS runtime it finds and the EJS scripts it would use: one YoutubeDL for all three."""
    logger = _Collect()
    with tempfile.TemporaryDirectory(prefix="ytmp3-doctor-") as workdir:
        options = {**ydl_options(settings, Path(workdir), None), "logger": logger}
        with yt_dlp.YoutubeDL(options) as ydl:
            providers = list(initialize_jsc_director(ydl.get_info_extractor("Youtube")).providers.values())
            version = ytdlp_version()
            runtime = js_runtime(ydl, providers)
            ejs = ejs_scripts(providers)
    data = {"yt_dlp": version.data, "ejs": ejs.data, "js_runtime": runtime.data}
    return Finding(data, version.problems + runtime.problems + ejs.problems, runtime.blocking or ejs.blocking)


def ytdlp_version(today: dt.date | None = None) -> Finding:
    version = yt_dlp.version.__version__
    released = dt.date(*(int(part) for part in version.split(".")[:3]))
    age = ((today or dt.date.today()) - released).days
    problems = []
    if age > OLD_AFTER_DAYS:
        problems.append(Msg.ngettext(
            'yt-dlp %(version)s is %(n)s day old and YouTube changes often: pip install -U "yt-dlp[default]" then '
            "python -m tasks restart",
            'yt-dlp %(version)s is %(n)s days old and YouTube changes often: pip install -U "yt-dlp[default]" then '
            "python -m tasks restart", age, version=version))
    return Finding({"version": version, "age_days": age}, problems)


def js_runtime(ydl: yt_dlp.YoutubeDL, providers: list[Any]) -> Finding:
    """The first runtime yt-dlp can use, as `yt-dlp -v` lists them; and the challenge providers it enables."""
    found = [runtime.info for runtime in ydl._js_runtimes.values() if runtime is not None and runtime.info]
    usable = [info for info in found if info.supported]
    available = [p.PROVIDER_NAME for p in providers if p.is_available()]
    if usable and available:
        info = usable[0]
        return Finding({"name": info.name, "version": info.version, "path": info.path,
                        "challenge_providers": available})
    if found:
        info = found[0]
        return Finding(
            {"name": info.name, "version": info.version, "path": info.path, "challenge_providers": available},
            [Msg(N_("JS runtime %(name)s %(version)s is too old for yt-dlp: pip install -r requirements.txt (it "
                    "brings a current deno)"), name=info.name, version=str(info.version))], blocking=True)
    return Finding(None, [Msg(N_('no JavaScript runtime for yt-dlp, so YouTube fails ("n challenge solving failed"): '
                                 "pip install -r requirements.txt (it brings deno) or put deno 2.3+ on the PATH"))],
                   blocking=True)


def ejs_scripts(providers: list[Any]) -> Finding:
    """Whether yt-dlp takes its challenge solver scripts from the installed yt-dlp-ejs (its own version check)."""
    expected = EJSBaseJCP._SCRIPT_VERSION
    installed = getattr(yt_dlp_ejs, "version", None) if yt_dlp_ejs else None
    ejs = [p for p in providers if isinstance(p, EJSBaseJCP)]
    provider = next((p for p in ejs if p.is_available()), ejs[0] if ejs else None)
    matches = installed is not None and provider is not None and all(
        _script_source(provider, kind) is ScriptSource.PYPACKAGE for kind in ScriptType)
    data = {"version": installed, "expected": expected, "matches": matches}
    if matches:
        return Finding(data)
    version = yt_dlp.version.__version__
    if installed:
        problem = Msg(N_('yt-dlp-ejs %(installed)s does not match yt-dlp %(version)s (it expects %(expected)s): pip '
                         'install -U "yt-dlp[default]" brings the matching one'), installed=str(installed),
                      version=version, expected=str(expected))
    else:
        problem = Msg(N_("yt-dlp-ejs is not installed, but is needed by yt-dlp %(version)s (it expects %(expected)s): "
                         'pip install -U "yt-dlp[default]" brings the matching one'), version=version,
                      expected=str(expected))
    return Finding(data, [problem], blocking=True)


def _script_source(provider: EJSBaseJCP, kind: ScriptType) -> ScriptSource | None:
    try:
        return provider._get_script(kind).source
    except Exception:  # refused every source (or would need the missing runtime to try the last one)
        return None



# -- PO-token provider, cookies, proxies ------------------------------------------------------------------------


def pot_provider(url: str | None, timeout: float) -> Finding:
    """The bgutil plugin installed, and its server answering GET /ping."""
    plugin = next((f"{p.PROVIDER_NAME} {p.PROVIDER_VERSION}" for p in _pot_providers.value.values()
                   if p.PROVIDER_NAME == POT_PLUGIN), None)
    data: dict[str, Any] = {"url": safe_url(url) if url else None, "plugin": plugin, "reachable": None}
    if not url:
        return Finding(data)
    problems = []
    if plugin is None:
        problems.append(Msg(N_("POT_PROVIDER_URL is set but the bgutil-ytdlp-pot-provider plugin is not installed: "
                               "pip install -r requirements.txt")))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the provider is reached directly
    try:
        with opener.open(url.rstrip("/") + "/ping", timeout=timeout) as answer:
            data["version"] = json.loads(answer.read(4096) or b"{}").get("version")
        data["reachable"] = True
    except (OSError, ValueError) as error:
        data.update(reachable=False, error=_reason(error))
        problems.append(Msg(N_("PO-token provider %(url)s does not answer (%(reason)s): start it (docker-compose up -d "
                               "pot) or correct POT_PROVIDER_URL"), url=safe_url(url), reason=_reason(error)))
    return Finding(data, problems, blocking=bool(problems))


def cookies(files: list[str]) -> Finding:
    """Each cookie file of COOKIES_FILE as the workers will read it; an unusable one stops the downloads."""
    data: list[dict[str, Any]] = []
    problems: list[Msg] = []
    unusable = False
    for name in files:
        report = inspect_cookies(name)
        data.append({"file": name, "ok": report.ok, "count": report.count, "youtube_login": report.login,
                     "earliest_expiry": report.login_expires.isoformat() if report.login_expires else None,
                     "error": report.error, "summary": report.summary_msg()})
        if report.fault and not report.readable:  # a file's own fault already says to export it again
            # i18n: %(problem)s is a cookie file's fault or warning (common/cookies.py), said on its own
            problems.append(Msg(N_("cookies %(file)s: %(problem)s: correct COOKIES_FILE, or send a new file with "
                                   "/cookies"), file=name, problem=report.fault))
        elif report.fault:
            problems.append(Msg(N_("cookies %(file)s: %(problem)s"), file=name, problem=report.fault))
        problems += [Msg(N_("cookies %(file)s: %(problem)s"), file=name, problem=caution)
                     for caution in report.cautions]
        unusable = unusable or not report.ok
    return Finding(data, problems, blocking=unusable)


def proxies(urls: list[str], timeout: float) -> Finding:
    """A TCP connection to each proxy of the pool (a proxy that does not accept one cannot carry a download)."""
    data: list[dict[str, Any]] = []
    problems: list[Msg] = []
    for url in urls:
        parsed = urlparse(url)
        port = parsed.port or DEFAULT_PORTS.get(parsed.scheme, 80)
        entry: dict[str, Any] = {"proxy": safe_url(url), "reachable": True}
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
        except OSError as error:
            entry.update(reachable=False, error=_reason(error))
            problems.append(Msg(N_("proxy %(proxy)s does not answer (%(reason)s): check it, or take it out of "
                                   "PROXY_URL"), proxy=safe_url(url), reason=_reason(error)))
        data.append(entry)
    return Finding(data, problems, blocking=bool(problems))


def routes(settings: Settings, timeout: float) -> Finding:
    """Each download route's last outcomes and rest, and the cookie sets found stale (common/routes.py)."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        statuses = RouteBook(client, Keys(settings.key_prefix), settings).report()
    except redis.RedisError:
        return Finding([])  # the Redis section says why
    finally:
        client.close()
    data = [{"route": s.route.id, "ok": s.ok, "failed": s.failed, "last_error": s.last_error or None,
             "resting_seconds": round(s.resting), "resting_for": {site: round(left) for site, left in s.rests},
             "cookies_stale": s.stale, "summary": s.said()} for s in statuses]
    stale = dict.fromkeys(s.route.cookies for s in statuses if s.stale)
    problems = [Msg(N_("cookies %(file)s: the site called this sign-in no longer valid, so it is skipped: send a "
                       "fresh export with /cookies"), file=str(path)) for path in stale]
    everywhere = set.intersection(*({site for site, _ in s.rests} for s in statuses)) if len(statuses) > 1 else set()
    if everywhere:
        sites = sorted(everywhere)
        named, more = ", ".join(sites[:SHOWN_SITES]), len(sites) - SHOWN_SITES
        problems.append(Msg.ngettext(
            "every download route rests for %(sites)s and %(n)s more site after failures (bot checks, refusals): "
            "each download from there gets one try until one recovers; add proxies to PROXY_URL or refresh the "
            "cookies",
            "every download route rests for %(sites)s and %(n)s more sites after failures (bot checks, refusals): "
            "each download from there gets one try until one recovers; add proxies to PROXY_URL or refresh the "
            "cookies", more, sites=named) if more > 0 else Msg(N_(
                "every download route rests for %(sites)s after failures (bot checks, refusals): each download from "
                "there gets one try until one recovers; add proxies to PROXY_URL or refresh the cookies"), sites=named))
    return Finding(data, problems)


def safe_url(url: str) -> str:
    """The URL without its password (proxy and Redis URLs may carry one)."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = f"{parsed.username}:***@{parsed.hostname}" + (f":{parsed.port}" if parsed.port else "")
    return urlunparse(parsed._replace(netloc=netloc))


def _reason(error: BaseException | str) -> str:
    """The cause in a few words: "Connection refused", "timed out"."""
    if isinstance(error, str):
        return error
    reason = getattr(error, "reason", None)  # urllib wraps the socket's error
    if reason is not None:
        return _reason(reason)
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# -- ffmpeg, Redis, workers --------------------------------------------------------------------------------------


def ffmpeg() -> Finding:
    found = {name: get_exe_version(name, args=["-version"], version_re=rf"{name} version (\S+)")
             for name in ("ffmpeg", "ffprobe")}
    missing = [name for name, version in found.items() if not version]
    data = {"version": found["ffmpeg"] or None, "ffprobe": found["ffprobe"] or None}
    if not missing:
        return Finding(data)
    if len(missing) == 1:
        problem = Msg(N_("%(program)s not found on the PATH: install ffmpeg (apt install ffmpeg)"), program=missing[0])
    else:
        problem = Msg(N_("ffmpeg and ffprobe not found on the PATH: install ffmpeg (apt install ffmpeg)"))
    return Finding(data, [problem], blocking=True)


def redis_and_workers(settings: Settings, timeout: float, with_workers: bool) -> Finding:
    """Redis answering PING, and how many workers serve each queue (from their presence records)."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
    data: dict[str, Any] = {"redis": {"url": safe_url(settings.redis_url), "ok": False}, "workers": None, "bots": []}
    try:
        client.ping()
        data["redis"]["ok"] = True
        now = time.time()
        data["bots"] = [{"platform": bot.platform, "line": stats.bot_line(bot, now), "loop_age": bot.loop_age(now),
                         "liveness": asdict(bot), "time": now} for bot in stats.bots(client, Keys(settings.key_prefix))]
        if with_workers:
            online = stats.workers(client, Keys(settings.key_prefix))
            data["workers"] = {queue: sum(queue in w.queues for w in online) for queue in stats.QUEUES}
    except redis.RedisError as error:
        data["redis"]["error"] = str(error)
        return Finding(data, [Msg(N_("Redis at %(url)s does not answer (%(reason)s): start it, or correct REDIS_URL"),
                                  url=safe_url(settings.redis_url), reason=str(error))], blocking=True)
    finally:
        client.close()
    idle = [queue for queue, count in (data["workers"] or {}).items() if not count]
    problems = [Msg(N_("no worker serves the %(queue)s queue: start one with python -m tasks worker -Q %(queue)s"),
                    queue=queue) for queue in idle]
    stalled = [Msg(N_("the %(platform)s bot's loop that follows the jobs has not turned for %(seconds)s s: its status "
                      "edits and deliveries have stopped; see its log and restart it"), platform=bot["platform"],
                   seconds=round(bot["loop_age"])) for bot in data["bots"] if bot["loop_age"] > STALLED_AFTER]
    return Finding(data, problems + stalled, blocking=bool(problems))


# -- output -----------------------------------------------------------------------------------------------------


def render(report: Report, lang: Lang | None = None) -> str:
    """The report for a terminal or a worker's log (English), or an admin's chat (`lang`): one line per part, then
    the problems. Commands, packages and settings named in them stay as they are."""
    lang = lang or i18n.get(i18n.SOURCE)
    s = report.sections
    ejs = s["ejs"]
    matched = N_("%(version)s (matches yt-dlp's %(expected)s)") if ejs["matches"] else \
        N_("%(version)s (does not match yt-dlp's %(expected)s)")
    missing = lang.gettext("missing")
    parts = [
        ("yt-dlp", lang.ngettext("%(version)s (%(n)s day old)", "%(version)s (%(n)s days old)",
                                 s["yt_dlp"]["age_days"], version=s["yt_dlp"]["version"])),
        ("EJS", lang.gettext(matched, version=ejs["version"] or lang.gettext("not installed"),
                             expected=ejs["expected"])),
        (lang.gettext("JS runtime"), _runtime_line(s["js_runtime"], lang)),
        (lang.gettext("PO tokens"), _pot_line(s["pot_provider"], lang)),
        (lang.gettext("cookies"), _cookies_line(s["cookies"], lang)),
        (lang.gettext("proxy"), _proxy_line(s["proxy"], lang)),
        *_route_lines(s["routes"], lang),
        ("ffmpeg", lang.gettext("%(version)s (ffprobe %(ffprobe)s)", version=s["ffmpeg"]["version"] or missing,
                                ffprobe=s["ffmpeg"]["ffprobe"] or missing)),
        ("Redis", lang.gettext("%(url)s: ok", url=s["redis"]["url"]) if s["redis"]["ok"] else
         lang.gettext("%(url)s: no answer", url=s["redis"]["url"])),
    ]
    if s["workers"] is not None:
        parts.append((lang.gettext("workers"), ", ".join(f"{queue} {count}" for queue, count in s["workers"].items())))
    parts.extend((lang.gettext("bot"), _bot_line(bot, lang)) for bot in s["bots"])
    width = max(len(heading) for heading, _ in parts) + 2  # the findings in one column, whatever the language
    lines = [f"{heading:<{width}}{finding}".rstrip() for heading, finding in parts]
    if report.problems:
        lines.append(lang.ngettext("%(n)s problem:", "%(n)s problems:", len(report.problems)))
        lines.extend(f"- {lang.say(problem)}" for problem in report.problems)
    else:
        lines.append(lang.gettext(NO_PROBLEMS))
    return "\n".join(lines)


def _runtime_line(runtime: dict[str, Any] | None, lang: Lang) -> str:
    if runtime is None:
        return lang.gettext("none found")
    return lang.gettext("%(name)s %(version)s (%(path)s); challenge providers: %(providers)s", name=runtime["name"],
                        version=runtime["version"], path=runtime["path"],
                        providers=", ".join(runtime["challenge_providers"]) or lang.gettext("none"))


def _pot_line(pot: dict[str, Any], lang: Lang) -> str:
    plugin = pot["plugin"] or lang.gettext("plugin not installed")
    if not pot["url"]:
        return lang.gettext("not configured (POT_PROVIDER_URL); %(plugin)s", plugin=plugin)
    if pot["reachable"]:
        return lang.gettext("%(url)s answers (server %(version)s); %(plugin)s", url=pot["url"], plugin=plugin,
                            version=pot.get("version") or "?")
    return lang.gettext("%(url)s does not answer; %(plugin)s", url=pot["url"], plugin=plugin)


def _cookies_line(files: list[dict[str, Any]], lang: Lang) -> str:
    return "; ".join(lang.say(entry["summary"]) for entry in files) if files else lang.gettext("none (COOKIES_FILE)")


def _proxy_line(pool: list[dict[str, Any]], lang: Lang) -> str:
    if not pool:
        return lang.gettext("none: downloads go direct (PROXY_URL)")
    return ", ".join(lang.gettext("%(proxy)s ok", proxy=entry["proxy"]) if entry["reachable"] else
                     lang.gettext("%(proxy)s no answer", proxy=entry["proxy"]) for entry in pool)


def _route_lines(found: list[dict[str, Any]], lang: Lang) -> list[tuple[str, str]]:
    """One line per route that has a story (tries, stale cookies), or one saying there is none yet."""
    lines = [lang.say(route["summary"]) if isinstance(route["summary"], Msg) else str(route["summary"])
             for route in found if route["ok"] or route["failed"] or route["cookies_stale"]]
    lines = lines or [lang.gettext("no tries yet") if found else lang.gettext("none (Redis did not answer)")]
    return [(lang.gettext("routes") if i == 0 else "", line) for i, line in enumerate(lines)]


def _bot_line(bot: dict[str, Any], lang: Lang) -> str:
    """A bot's liveness in `lang` (its record and when it was read travel in the report)."""
    return stats.bot_line(stats.BotInfo(**bot["liveness"]), bot["time"], lang)


def main(as_json: bool = False, workers: bool = True, timeout: float = 3.0, language: str = i18n.SOURCE) -> int:
    """`language`: the report as an admin's chat shows it (bots/admin.py asks for it); the terminal's is English."""
    report = examine(timeout=timeout, workers=workers)
    print(json.dumps(report.as_json(), indent=2) if as_json else render(report, i18n.get(language)))
    sys.stdout.flush()
    return 0 if report.ok else 1
