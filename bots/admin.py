"""Admin commands, the same on both platforms: plain-text answers from the shared stats module, each in the
asking admin's language (`lang`, resolved by the bot as for any user). Queue names, job ids, states, error codes
and setting names are identifiers and stay as they are."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

from common import context, cookies, stats
from common.i18n import N_, Lang
from common.settings import get_settings
from tasks import monitor, pipeline
from tasks.celery_app import QUEUES

ROOT = Path(__file__).resolve().parent.parent
DOCTOR_SECONDS = 60.0  # the doctor's own checks take a few seconds; past this it is stuck
_doctor = threading.Lock()  # one doctor at a time, however many admins ask


def is_admin(user_id: int | None, admin_ids: list[int]) -> bool:
    """Checked on every admin call, against the IDs in settings."""
    return user_id is not None and user_id in admin_ids


def stats_text(lang: Lang) -> str:
    return stats.render_stats(stats.collect(monitor.inspect_workers), lang)


def job_text(job_id: str, lang: Lang) -> str:
    job = context.store().get(job_id.strip()) if job_id.strip() else None
    if job is None:
        return lang.gettext("No such job. Usage: /job <id>")
    lines = [lang.gettext("Job %(id)s: %(state)s", id=job.id, state=str(job.state)),
             lang.gettext("Link: %(url)s", url=lang.ltr(job.url)),
             lang.gettext("Title: %(title)s", title=lang.ltr(job.title) or "-"),
             lang.gettext("Progress: %(percent)s", percent=lang.percent(job.percent)),
             lang.gettext("Bitrate: %(bitrate)s kbit/s", bitrate=job.bitrate)]
    if job.duration:
        lines.append(lang.gettext("Duration: %(duration)s", duration=lang.duration(job.duration)))
    if job.error_code:
        lines.append(lang.gettext("Error: %(code)s: %(text)s", code=job.error_code, text=job.error_text))
    lines.append(lang.gettext("Created: %(time)s", time=_when(job.created)))
    if job.finished:
        lines.append(lang.gettext("Finished: %(time)s (took %(took)s)", time=_when(job.finished),
                                  took=stats.human_seconds(job.finished - job.created, lang)))
    lines.append(lang.gettext("Requested by: %(n)s", n=len(context.store().origins(job.id))))
    return "\n".join(lines)


def dead_text(count: int, lang: Lang) -> str:
    client, keys = context.redis_client(), context.keys()
    letters = [json.loads(raw) for raw in client.lrange(keys.dead, 0, max(1, min(count, 50)) - 1)]
    if not letters:
        return lang.gettext("No dead letters.")
    return "\n".join(f"{_when(d['time'])} {d['job_id']} {d['task']} {d['code']}" for d in letters)


def retry(job_id: str, lang: Lang) -> str:
    if not job_id.strip():
        return lang.gettext("Usage: /retry <job id>")
    new_id = pipeline.retry(job_id.strip())
    if new_id:
        return lang.gettext("Retrying as job %(id)s.", id=new_id)
    return lang.gettext("Only a failed or cancelled job can be retried.")


def cancel(job_id: str, lang: Lang) -> str:
    if not job_id.strip():
        return lang.gettext("Usage: /cancel <job id>")
    if pipeline.cancel(job_id.strip()):
        return lang.gettext("Cancelled.")
    return lang.gettext("That job has already ended (or does not exist).")


def health_text(lang: Lang) -> str:
    """The doctor's report (`python -m tasks doctor`), run beside this process: a bot never loads yt-dlp."""
    with _doctor:
        try:
            result = subprocess.run([sys.executable, "-m", "tasks", "doctor", "--lang", lang.code], cwd=ROOT,
                                    capture_output=True, text=True, timeout=DOCTOR_SECONDS, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return lang.gettext("The doctor did not finish within %(seconds)s s; run python -m tasks doctor on the "
                                "server.", seconds=DOCTOR_SECONDS)
    if not result.stdout.strip():  # it could not even start (settings, imports): its last line says why
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return lang.gettext("The doctor failed: %(reason)s", reason=last)
    return result.stdout.strip()


def purge_question(lang: Lang) -> str:
    waiting = sum(stats.queue_depth(q) for q in QUEUES)
    return lang.ngettext("Purge the queues? %(n)s waiting task will be dropped.",
                         "Purge the queues? %(n)s waiting tasks will be dropped.", waiting)


def purge(lang: Lang) -> str:
    """Empty every queue and cancel the jobs whose messages went (as `python -m tasks purge --yes`)."""
    removed, cancelled = monitor.empty(list(QUEUES))
    messages = sum(removed.values())
    if not messages:
        return lang.gettext("Nothing to purge: the queues are empty.")
    return " ".join([lang.ngettext("Purged %(n)s message (%(queues)s).", "Purged %(n)s messages (%(queues)s).",
                                   messages, queues=", ".join(f"{q} {n}" for q, n in removed.items() if n)),
                     lang.ngettext("Cancelled %(n)s job.", "Cancelled %(n)s jobs.", cancelled)])


NO_COOKIES_FILE = N_("No COOKIES_FILE is set. Set it to a path the bots and the workers share (e.g. "
                     "COOKIES_FILE=/data/cookies.txt), restart, and send the file again.")


def cookies_text(how: str, lang: Lang) -> str:
    """/cookies without a file: each cookie file's summary and problems, and how to replace the first (`how`: a
    message id with %(file)s, the platform's way)."""
    paths = get_settings().cookies_file
    if not paths:
        return lang.gettext(NO_COOKIES_FILE)
    lines = []
    for report in map(cookies.inspect, paths):
        lines += [report.summary(lang),
                  *("  " + lang.gettext("warning: %(warning)s", warning=w) for w in report.cautions)]
    return "\n".join([*lines, lang.gettext(how, file=paths[0])])


def install_cookies(data: bytes, lang: Lang) -> str:
    """/cookies with a file: check it, write it over the first COOKIES_FILE; the answer never shows a value."""
    paths = get_settings().cookies_file
    if not paths:
        return lang.gettext(NO_COOKIES_FILE)
    if len(data) > cookies.MAX_BYTES:
        return cookies_too_large(lang)
    try:
        report = cookies.install(paths[0], data)
    except OSError as error:
        return lang.gettext("Could not write %(file)s (%(reason)s); nothing was changed.", file=paths[0],
                            reason=error.strerror or type(error).__name__)
    if not report.ok:
        return lang.gettext("Not installed: the file %(problem)s. The cookies in use are unchanged.",
                            problem=report.fault or "")
    lines = [lang.gettext("Installed. %(summary)s.", summary=report.summary_msg())]
    if cookies.backup_of(report.path).exists():
        lines.append(lang.gettext("The previous file is kept as %(file)s.", file=str(cookies.backup_of(report.path))))
    return "\n".join([*lines, *(lang.gettext("Warning: %(warning)s", warning=w) for w in report.cautions)])


def cookies_too_large(lang: Lang) -> str:
    return lang.gettext("Not installed: a cookies.txt is well under %(size)s; that file is not one.",
                        size=lang.size(cookies.MAX_BYTES))


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
