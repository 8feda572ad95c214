"""Cookie files are inspected the way yt-dlp will read them, and no value is ever shown."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

import pytest

from common import cookies
from tests.cookiefiles import HEADER, LOGIN_NAMES, SECRET, cookies_text, line, write_cookies


def no_secret(report: cookies.CookieReport) -> None:
    assert SECRET not in repr(report) and SECRET not in report.summary() and SECRET not in str(report.problems())


def test_a_signed_in_export_is_clean(tmp_path: Path) -> None:
    expires = time.time() + 100 * 86400
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", expires=expires))
    assert report.ok and report.readable and report.login
    assert report.count == len(LOGIN_NAMES) + 2
    assert report.login_expires == dt.datetime.fromtimestamp(int(expires), dt.UTC)
    assert report.warnings == () and report.problems() == []
    day = report.login_expires.date()  # type: ignore[union-attr]
    assert report.summary() == (f"{tmp_path / 'c.txt'}: {report.count} cookies, YouTube login cookies present, "
                                f"earliest expiry {day:%b} {day.day}, {day.year}")  # Babel's English date
    no_secret(report)


def test_the_earliest_login_cookie_sets_the_expiry(tmp_path: Path) -> None:
    soon = time.time() + 5 * 86400
    text = cookies_text() + line("SID", soon, domain="www.youtube.com")
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert report.login and report.login_expires == dt.datetime.fromtimestamp(int(soon), dt.UTC)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_by_others_is_a_warning(tmp_path: Path, mode: int) -> None:
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", mode=mode))
    assert report.ok and report.login
    assert report.problems() == [f"{tmp_path / 'c.txt'}: readable by other users (mode {mode:o}); chmod 600 it"]


def test_no_login_cookies_is_a_warning(tmp_path: Path) -> None:
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", login=False))
    assert report.ok and report.count == 2 and not report.login and report.login_expires is None
    assert len(report.warnings) == 1 and report.warnings[0].startswith("no YouTube login cookies")


def test_login_cookies_of_another_site_do_not_count(tmp_path: Path) -> None:
    text = HEADER + "".join(line(name, time.time() + 86400, domain=".google.com") for name in LOGIN_NAMES)
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert report.count == len(LOGIN_NAMES) and not report.login
    assert report.warnings[0].startswith("no YouTube login cookies")


def test_expired_login_cookies(tmp_path: Path) -> None:
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", expires=time.time() - 2 * 86400))
    assert report.ok and not report.login and report.count == len(LOGIN_NAMES) + 2
    day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).date()
    assert report.warnings == (f"YouTube login cookies expired on {day:%b} {day.day}, {day.year}: refresh them with "
                               "/cookies",)


def test_login_needs_login_info_and_sapisid_as_yt_dlp_does(tmp_path: Path) -> None:
    text = HEADER + line("SID", time.time() + 86400) + line("HSID", time.time() + 86400)
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert not report.login
    assert report.warnings == ("YouTube login cookies incomplete (yt-dlp needs LOGIN_INFO and SAPISID)",)


def test_session_cookies_as_yt_dlp_writes_them(tmp_path: Path) -> None:
    """yt-dlp saves session cookies with expiry 0: alive, no expiry date."""
    text = HEADER + line("LOGIN_INFO", 0) + line("__Secure-3PAPISID", 0)
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert report.login and report.login_expires is None and report.warnings == ()


def test_a_missing_file(tmp_path: Path) -> None:
    report = cookies.inspect(tmp_path / "nope.txt")
    assert not report.ok and not report.readable and report.error == "not found"


def test_an_unreadable_file(tmp_path: Path) -> None:
    path = write_cookies(tmp_path / "c.txt", mode=0o000)
    try:
        if path.read_bytes():  # root reads anything: use a directory instead, which nobody reads as a file
            path = tmp_path / "dir"
            path.mkdir()
    except PermissionError:
        pass
    report = cookies.inspect(path)
    assert not report.ok and not report.readable and report.error is not None
    assert report.error.startswith("not readable (")


@pytest.mark.parametrize(("text", "error"), [
    ('[{"name": "SID", "value": "' + SECRET + '"}]', "is JSON, not a Netscape cookie file"),
    (f"SID={SECRET}; HSID={SECRET}\n", "lacks the '# Netscape HTTP Cookie File' first line"),
    ("", "lacks the '# Netscape HTTP Cookie File' first line"),
    (HEADER + f".youtube.com\tFALSE\t/\tTRUE\t0\tSID\t{SECRET}\n", "line 4: the subdomain flag does not match"),
])
def test_unparseable_files_name_the_problem_not_the_content(tmp_path: Path, text: str, error: str) -> None:
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert not report.ok and report.readable and report.error is not None
    assert report.error.startswith(error) and report.error.endswith("export it again as cookies.txt (Netscape format)")
    no_secret(report)


def test_binary_content(tmp_path: Path) -> None:
    report = cookies.inspect_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + SECRET.encode())
    assert report.error == "not a text file; export it again as cookies.txt (Netscape format)"


def test_malformed_lines_are_skipped_as_yt_dlp_does(tmp_path: Path) -> None:
    text = cookies_text() + f"garbage {SECRET}\n" + f".youtube.com\tTRUE\t/\tTRUE\tsoon\tX\t{SECRET}\n"
    report = cookies.inspect(write_cookies(tmp_path / "c.txt", text))
    assert report.ok and report.login and report.count == len(LOGIN_NAMES) + 2
    first = len(text.splitlines()) - 1
    assert report.warnings == (f"2 malformed lines skipped (lines {first}, {first + 1})",)
    no_secret(report)


def test_crlf_line_ends_as_windows_exporters_write(tmp_path: Path) -> None:
    report = cookies.inspect_bytes(cookies_text().replace("\n", "\r\n").encode())
    assert report.ok and report.login and report.warnings == ()


def test_yt_dlp_reads_what_passes(tmp_path: Path) -> None:
    """The same file through yt-dlp's own jar (the workers' reader): same count, same session."""
    from yt_dlp.cookies import YoutubeDLCookieJar

    path = write_cookies(tmp_path / "c.txt", cookies_text() + "#HttpOnly_" + line("X", time.time() + 60))
    jar = YoutubeDLCookieJar(str(path))
    jar.load()
    report = cookies.inspect(path)
    assert report.count == len(list(jar))
    youtube = {c.name for c in jar.get_cookies_for_url("https://www.youtube.com")}
    assert report.login == ("LOGIN_INFO" in youtube and "SAPISID" in youtube)


def test_the_jobs_copy_is_what_yt_dlp_loads_without_a_word(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """yt-dlp prints each malformed line it skips, value and all, to stderr (a worker's log): the copy has none."""
    from yt_dlp.cookies import YoutubeDLCookieJar

    text = cookies_text() + f"garbage {SECRET}-garbage\n" + f".youtube.com\tTRUE\t/\tTRUE\tsoon\tX\t{SECRET}-x\n"
    original = write_cookies(tmp_path / "c.txt", text)
    copy = tmp_path / "copy.txt"
    copy.write_bytes(cookies.for_ytdlp(original.read_bytes()))
    as_is, cleaned = YoutubeDLCookieJar(str(original)), YoutubeDLCookieJar(str(copy))
    as_is.load()
    assert f"{SECRET}-x" in capfd.readouterr().err  # what the worker's log got before
    cleaned.load()
    assert capfd.readouterr().err == ""
    assert sorted((c.domain, c.name, c.value) for c in cleaned) == sorted((c.domain, c.name, c.value) for c in as_is)


@pytest.mark.parametrize("text", [
    '[{"name": "SID", "value": "' + SECRET + '"}]',
    HEADER + f".youtube.com\tFALSE\t/\tTRUE\t0\tSID\t{SECRET}\n",  # yt-dlp's refusal quotes this line
])
def test_a_file_yt_dlp_refuses_gives_no_copy_and_a_reason_without_a_value(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        cookies.for_ytdlp(text.encode())
    assert SECRET not in str(refused.value)
    assert str(refused.value).endswith("; export it again as cookies.txt (Netscape format)")


def test_log_problems_one_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = write_cookies(tmp_path / "good.txt")
    loose = write_cookies(tmp_path / "loose.txt", mode=0o644, login=False)
    broken = write_cookies(tmp_path / "broken.txt", f"SID={SECRET}\n")
    with caplog.at_level(logging.INFO):
        reports = cookies.log_problems([good, loose, broken, tmp_path / "gone.txt"], logging.getLogger("t"))
    assert [r.ok for r in reports] == [True, True, False, False]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", f"COOKIES_FILE {loose}: readable by other users (mode 644); chmod 600 it"),
        ("WARNING", f"COOKIES_FILE {loose}: " + reports[1].warnings[1]),
        ("ERROR", f"COOKIES_FILE {broken}: lacks the '# Netscape HTTP Cookie File' first line; "
                  "export it again as cookies.txt (Netscape format)"),
        ("ERROR", f"COOKIES_FILE {tmp_path / 'gone.txt'}: not found"),
    ]
    assert SECRET not in caplog.text


def test_install_replaces_atomically_and_keeps_a_backup(tmp_path: Path) -> None:
    path = write_cookies(tmp_path / "c.txt", login=False, mode=0o644)
    old = path.read_bytes()
    new = cookies_text().encode()
    report = cookies.install(path, new)
    assert report.ok and report.login and report.warnings == ()
    assert path.read_bytes() == new and path.stat().st_mode & 0o777 == 0o600
    backup = tmp_path / "c.txt.bak"
    assert backup.read_bytes() == old and backup.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "c.txt.bak"]  # no temporary file left


def test_install_creates_a_first_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "cookies.txt"
    report = cookies.install(path, cookies_text().encode())
    assert report.ok and path.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "secrets" / "cookies.txt.bak").exists()


def test_install_refuses_a_broken_file_and_writes_nothing(tmp_path: Path) -> None:
    path = write_cookies(tmp_path / "c.txt")
    old = path.read_bytes()
    report = cookies.install(path, b'{"cookies": "' + SECRET.encode() + b'"}')
    assert report.error is not None and report.error.startswith("is JSON")
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]
    no_secret(report)


def test_install_into_an_unwritable_place_leaves_the_file(tmp_path: Path) -> None:
    path = write_cookies(tmp_path / "c.txt")
    old = path.read_bytes()
    (tmp_path / "c.txt.bak").mkdir()  # the backup cannot replace a folder
    with pytest.raises(OSError):
        cookies.install(path, cookies_text(login=False).encode())
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "c.txt.bak"]
