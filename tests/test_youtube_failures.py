"""YouTube from a server: extractor args from settings, and yt-dlp's failures mapped to our codes.

The messages below are copied from yt-dlp 2026.10.26 (the pinned release) and from
what YouTube sends, which yt-dlp passes on; each names its raise site. They go through
`classify` the way YoutubeDL hands them over: a DownloadError wrapping the extractor's error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yt_dlp
from yt_dlp.extractor.youtube import YoutubeIE
from yt_dlp.utils import DownloadError, ExtractorError, GeoRestrictedError

from common.errors import OPERATOR, TEXT, Code, JobError
from common.settings import Settings
from tasks.download import classify, extractor_args, ydl_options

VIDEO_ID = "dQw4w9WgXcQ"

# youtube/_base.py:715-717 (_youtube_login_hint), after extractor/common.py:602 (_login_hint "cookies")
HINT = ("Use --cookies-from-browser or --cookies for the authentication. See  "
        "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually pass "
        "cookies. Also see  https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies  for tips "
        "on effectively exporting YouTube cookies")

# Warnings yt-dlp gives before the error, as our logger receives them ("[ie] id: " + message).
NO_JS_RUNTIME = (  # youtube/_video.py:2995-2999
    "[youtube] No supported JavaScript runtime could be found. Only deno is enabled by default; to use another "
    "runtime add  --js-runtimes RUNTIME[:PATH]  to your command/config. YouTube extraction without a JS runtime "
    "has been deprecated, and some formats may be missing. See  https://github.com/yt-dlp/yt-dlp/wiki/EJS  for "
    "details on installing one")
N_CHALLENGE_FAILED = (  # youtube/_video.py:3343-3356
    f"[youtube] {VIDEO_ID}: n challenge solving failed: Some formats may be missing. Ensure you have a supported "
    "JavaScript runtime and challenge solver script distribution installed. Review any warnings presented before "
    "this message. For more details, refer to  https://github.com/yt-dlp/yt-dlp/wiki/EJS")
POT_PROVIDER_DOWN = (  # bgutil-ytdlp-pot-provider 2.0.2, getpot_bgutil_http.py:65-71, via pot/_director.py:56,73
    "[youtube] [pot:bgutil:http] Error reaching GET http://pot:4416/ping (caused by TransportError). "
    "Please make sure that the server is reachable at http://pot:4416.")
POT_MISSING = (  # youtube/_video.py:3196-3206 (a warning for clients outside the defaults)
    f"[youtube] {VIDEO_ID}: mweb client https formats require a GVS PO Token which was not provided. They will be "
    "skipped as they may yield HTTP Error 403. You can manually pass a GVS PO Token for this client with "
    '--extractor-args "youtube:po_token=mweb.gvs+XXX". For more information, refer to  '
    "https://github.com/yt-dlp/yt-dlp/wiki/PO-Token-Guide")
COOKIES_ROTATED = (  # youtube/_base.py:840-844
    "[youtube] The provided YouTube account cookies are no longer valid. They have likely been rotated in the "
    "browser as a security measure. For tips on how to effectively export YouTube cookies, refer to  "
    "https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies .")

RATE_LIMIT = (  # youtube/_video.py:4076-4081, on YouTube's "This content isn't available, try again later."
    "This content isn't available, try again later. The current session has been rate-limited by YouTube for up "
    "to an hour. It is recommended to use `-t sleep` to add a delay between video requests to avoid exceeding the "
    "rate limit. For more information, refer to  "
    "https://github.com/yt-dlp/yt-dlp/wiki/Extractors#this-content-isnt-available-try-again-later")


def handed_over(message: str, cls: type[ExtractorError] = ExtractorError, ie: str = "youtube",
                expected: bool = True, **kwargs: object) -> DownloadError:
    """What YoutubeDL raises: DownloadError("ERROR: [ie] id: message") with the extractor's error as its cause."""
    try:
        raise cls(message, expected=expected, video_id=VIDEO_ID, ie=ie, **kwargs)
    except ExtractorError as error:
        return DownloadError(f"ERROR: {error}", sys.exc_info())


def test_the_copied_login_hint_is_the_installed_releases() -> None:
    assert YoutubeIE(yt_dlp.YoutubeDL({"quiet": True}))._youtube_login_hint == HINT


CASES = [
    # YouTube's reasons, as _video.py:4047-4083 passes them on (a "sign in" reason gets HINT at 4071-4073)
    ("bot check", handed_over(f"Sign in to confirm you\u2019re not a bot. {HINT}"), Code.BOT_CHECK),
    ("bot check, plain apostrophe", handed_over(f"Sign in to confirm you're not a bot. {HINT}"), Code.BOT_CHECK),
    ("ip blocked", handed_over(  # youtube/_video.py:3185-3186
        "All player responses are invalid. Your IP is likely being blocked by Youtube"), Code.BOT_CHECK),
    ("captcha", handed_over(  # youtube/_video.py:4074-4075
        "Video unavailable. YouTube is requiring a captcha challenge before playback"), Code.BOT_CHECK),
    ("rate limit", handed_over(RATE_LIMIT), Code.RATE_LIMITED),
    ("http 429", DownloadError("ERROR: unable to download video data: HTTP Error 429: Too Many Requests"),
     Code.RATE_LIMITED),
    ("age", handed_over(f"Sign in to confirm your age. This video may be inappropriate for some users. {HINT}"),
     Code.LOGIN_REQUIRED),
    ("login required", handed_over(  # youtube/_base.py:719-722 through extractor/common.py:1245-1253
        f"Login details are needed to download this content. {HINT}"), Code.LOGIN_REQUIRED),
    ("registered users", handed_over(  # extractor/common.py:1246 (raise_login_required's default), other sites
        "This video is only available for registered users. Use --cookies, --cookies-from-browser, --username and "
        "--password, --netrc-cmd, or --netrc (vimeo) to provide account credentials", ie="vimeo"),
     Code.LOGIN_REQUIRED),
    ("private", handed_over(f"Private video. Sign in if you've been granted access to this video. {HINT}"),
     Code.PRIVATE),
    ("members", handed_over(
        "Join this channel to get access to members-only content like this video, and other exclusive perks."),
     Code.PRIVATE),
    ("members level", handed_over(
        "This video is available to this channel's members on level: Tier 1 (or any higher level). Join this "
        "channel to get access to members-only content and other exclusive perks."), Code.PRIVATE),
    ("geo", handed_over(  # youtube/_video.py:4061-4067 through extractor/common.py:1255-1262
        "The uploader has not made this video available in your country", cls=GeoRestrictedError,
        countries=["US"]), Code.GEO_BLOCKED),
    ("premiere", handed_over("Premieres in 10 hours"), Code.UPCOMING),
    ("live event", handed_over("This live event will begin in 3 hours."), Code.UPCOMING),
    ("no format", handed_over(  # YoutubeDL.py:3091-3094
        "Requested format is not available. Use --list-formats for a list of available formats"), Code.NO_FORMAT),
    ("no formats found", handed_over("No video formats found!"), Code.NO_FORMAT),  # YoutubeDL.py:1188-1194
    ("extraction broke", handed_over(  # an unexpected ExtractorError: bug_reports_message() is appended
        "Unable to extract yt initial data", expected=False), Code.NO_FORMAT),
    ("no format elsewhere", handed_over("No video formats found!", ie="generic"), Code.UNAVAILABLE),
]


@pytest.mark.parametrize(("error", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_youtube_failures_get_their_own_code(error: DownloadError, code: Code) -> None:
    failure = classify(error)
    assert failure.code == code
    assert failure.text == TEXT[code]
    assert (failure.alert != "") == (code in OPERATOR)


@pytest.mark.parametrize(("warning", "alert"), [
    (NO_JS_RUNTIME, "js_runtime"),
    (POT_PROVIDER_DOWN, "pot_provider"),
    (POT_MISSING, "pot_provider"),
    (N_CHALLENGE_FAILED, "no_format"),
])
def test_a_missing_format_names_its_cause_by_the_warning_before_it(warning: str, alert: str) -> None:
    error = handed_over("Requested format is not available. Use --list-formats for a list of available formats")
    failure = classify(error, ["[youtube] Some unrelated warning", warning])
    assert (failure.code, failure.alert) == (Code.NO_FORMAT, alert)


def test_rotated_cookies_turn_a_sign_in_request_into_expired_cookies() -> None:
    bot_check = handed_over(f"Sign in to confirm you\u2019re not a bot. {HINT}")
    age = handed_over(f"Sign in to confirm your age. This video may be inappropriate for some users. {HINT}")
    assert classify(bot_check, [COOKIES_ROTATED]).code == Code.COOKIES_EXPIRED
    assert classify(age, [COOKIES_ROTATED]).code == Code.COOKIES_EXPIRED
    assert classify(age, [COOKIES_ROTATED]).alert == "cookies_expired"
    assert classify(handed_over("Premieres in 10 hours"), [COOKIES_ROTATED]).code == Code.UPCOMING


def test_codes_that_need_the_operator_alert_and_the_rest_do_not() -> None:
    assert JobError(Code.BOT_CHECK).alert == "bot_check"
    assert JobError(Code.NO_FORMAT, alert="js_runtime").alert == "js_runtime"
    assert JobError(Code.PRIVATE).alert == ""
    assert JobError(Code.RATE_LIMITED).retryable and JobError(Code.BOT_CHECK).retryable
    assert not JobError(Code.PRIVATE).retryable and not JobError(Code.GEO_BLOCKED).retryable


def test_upcoming_found_by_extraction_is_not_called_live() -> None:
    from tasks.download import check_info

    with pytest.raises(JobError) as caught:
        check_info({"live_status": "is_upcoming", "duration": None}, Settings())
    assert caught.value.code == Code.UPCOMING


# -- extractor args


def cli_extractor_args(entries: list[str]) -> dict:
    """What yt-dlp's command line makes of the same entries."""
    argv = [arg for entry in entries for arg in ("--extractor-args", entry)]
    return yt_dlp.parse_options(["--ignore-config", *argv]).ydl_opts["extractor_args"]


def test_extractor_args_from_the_environment_reach_yt_dlp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("YTDLP_EXTRACTOR_ARGS",
                       "youtube:player_client=default,-tv;formats=missing_pot generic:impersonate")
    settings = Settings()
    assert settings.ytdlp_extractor_args == ["youtube:player_client=default,-tv;formats=missing_pot",
                                             "generic:impersonate"]
    options = ydl_options(settings, tmp_path, None)
    assert options["extractor_args"] == cli_extractor_args(settings.ytdlp_extractor_args)
    with yt_dlp.YoutubeDL(options) as ydl:  # the YouTube extractor reads them as its own
        youtube = ydl.get_info_extractor("Youtube")
        assert youtube._configuration_arg("player_client") == ["default", "-tv"]
        assert youtube._configuration_arg("formats") == ["missing_pot"]


def test_no_extractor_args_leave_yt_dlp_its_defaults(tmp_path: Path) -> None:
    assert ydl_options(Settings(ytdlp_extractor_args=[]), tmp_path, None)["extractor_args"] == {}


@pytest.mark.parametrize("entries", [
    ["youtube:player_client=web", "youtube:player_skip=webpage"],  # the same extractor twice
    ["youtube:po_token=web.gvs+A\\,B", "YouTube:lang=de", "youtubepot-bgutilhttp:base_url=http://pot:4416"],
    ["youtubepot-bgutilhttp:base_url=http://pot:4416", "youtubepot-bgutilhttp:base_url=http://other:4416"],
])
def test_several_entries_combine_as_on_yt_dlps_command_line(entries: list[str]) -> None:
    assert extractor_args(*entries) == cli_extractor_args(entries)


def test_a_changed_result_does_not_change_the_next() -> None:
    first = extractor_args("youtube:player_client=web")
    first["youtube"]["player_client"].append("tv")
    assert extractor_args("youtube:player_client=web") == {"youtube": {"player_client": ["web"]}}


@pytest.mark.parametrize("entry", ["youtube", "you.tube:x=1"])
def test_a_malformed_entry_is_refused_in_settings(entry: str) -> None:
    with pytest.raises(ValueError, match="IE_KEY:ARG=VALUE"):
        Settings(ytdlp_extractor_args=[entry])
