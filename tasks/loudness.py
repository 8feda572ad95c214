"""Loudness: EBU R128 measured by ffmpeg's ebur128 filter, linear normalisation to a job's target under
a true-peak ceiling, and ReplayGain 2.0 values for the tags, all without a second encode.

- A job with a target (LOUDNESS, or its own): a first pass decodes the source (its range) once, "normalising"
  in the status: `ebur128` measures its loudness, and its true peak is the peak of the audio oversampled to
  192 kHz (BS.1770's method: 4x at 48 kHz; `astats` reads the peak). The one encode then applies a single
  gain (`volume`): the target minus the measured loudness, held down so that the true peak stays under
  the ceiling. That is what loudnorm's linear mode applies; a quiet track whose peaks would pass the
  ceiling is raised only as far as they allow (no compression, no limiter).
- Without one: the encode itself passes the audio through `ebur128=peak=sample` (unchanged) and its
  summary gives the ReplayGain values.

Why not loudnorm's own first pass (print_format=json): it measures with the same EBU R128 code but runs
everything at 192 kHz. CPU seconds of a first pass over the 10-minute benchmark source (mono Opus): ~9.5
with loudnorm, ~1.9 with ebur128's own true peak, ~1.5 as here; the MP3 encode itself takes ~3.5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

TRUE_PEAK_CEILING = -1.0  # dBTP: where a normalised MP3's peaks may go at most
ENCODER_HEADROOM = 0.5  # dB: MP3 encoding moves peaks by a few tenths; kept free under the ceiling
REPLAYGAIN_REFERENCE = -18.0  # LUFS: ReplayGain 2.0's reference loudness
SILENT = -70.0  # LUFS: what ebur128 reports when nothing passes its gate (silence)
MEASURE_SHARE = 0.3  # of the conversion's percent range: the first pass costs about 0.3-0.4 of an encode
NORMALISING = "normalising"  # the job's step while the first pass runs (common.render shows it)

# The first pass (its output: the measured branch, to a null sink), and the encode's own measurement
# (framelog=verbose: ebur128 logs only its summary at info level).
MEASURE = [
    "-filter_complex",
    "[0:a:0]asplit=2[loudness][peak];[loudness]ebur128=framelog=verbose[measured];"
    "[peak]aresample=192000,astats=measure_perchannel=none:measure_overall=Peak_level,anullsink",
    "-map", "[measured]", "-f", "null", "-",
]
MEASURE_WHILE_ENCODING = "ebur128=peak=sample:framelog=verbose"

_NUMBER = r"(-?\d+(?:\.\d+)?|-inf|nan)"
_INTEGRATED = re.compile(rf"Integrated loudness:\s*I:\s*{_NUMBER} LUFS")
_PEAK = re.compile(rf"(?:(?:True|Sample) peak:\s*Peak:\s*{_NUMBER} dBFS|Peak level dB:\s*{_NUMBER})")


@dataclass(frozen=True)
class Loudness:
    """Audio as measured: integrated loudness (LUFS) and peak (dBFS; true or sample peak)."""

    integrated: float
    peak: float


@dataclass(frozen=True)
class ReplayGain:
    """ReplayGain 2.0: the gain (dB) that brings audio to -18 LUFS, and its peak (1.0: full scale)."""

    gain: float
    peak: float


def summary(lines: Iterable[str]) -> Loudness | None:
    """The loudness and peak in the end of ffmpeg's log: ebur128's summary (its last), the peak from it or
    from astats; None when they aren't there, or nothing was loud enough to measure (silence)."""
    text = "\n".join(lines)
    integrated = _INTEGRATED.search(text[text.rfind("Summary:"):]) if "Summary:" in text else None
    peaks = list(_PEAK.finditer(text))
    if integrated is None or not peaks:
        return None
    try:
        measured = Loudness(float(integrated.group(1)), float(peaks[-1].group(1) or peaks[-1].group(2)))
    except ValueError:
        return None
    if not measured.integrated > SILENT + 0.5 or measured.peak != measured.peak:  # silence, or nan
        return None
    return measured


def gain(measured: Loudness, target: float) -> float:
    """The one gain (dB) of linear normalisation: to the target, but never past the true-peak ceiling."""
    return round(min(target - measured.integrated, TRUE_PEAK_CEILING - ENCODER_HEADROOM - measured.peak), 2)


def replaygain(measured: Loudness, applied: float = 0.0) -> ReplayGain:
    """ReplayGain of audio measured as `measured`, after a gain of `applied` dB. The one computation for a
    track and, from an album's loudness as a whole, for the album."""
    return ReplayGain(round(REPLAYGAIN_REFERENCE - (measured.integrated + applied), 2),
                      round(10 ** ((measured.peak + applied) / 20), 6))


def album(tracks: Iterable[tuple[ReplayGain, float]]) -> ReplayGain | None:
    """An album's ReplayGain from its tracks' (ReplayGain, seconds): the loudness of the tracks played in a row,
    their energies weighted by duration (BS.1770's mean, without re-gating the whole), and the highest peak."""
    measured = [(gain, seconds) for gain, seconds in tracks if seconds > 0]
    if not measured:
        return None
    seconds = sum(s for _, s in measured)
    energy = sum(s * 10 ** ((REPLAYGAIN_REFERENCE - g.gain) / 10) for g, s in measured) / seconds
    return ReplayGain(round(REPLAYGAIN_REFERENCE - 10 * math.log10(energy), 2), max(g.peak for g, _ in measured))
