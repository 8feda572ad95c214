"""Chapters as strangers' data: tasks.chapters.clean keeps only what can be cut into tracks."""

from __future__ import annotations

from tasks import chapters


def test_hostile_chapter_lists_are_bounded_ordered_and_titled() -> None:
    raw = [
        "not a chapter", {"start_time": "nan", "end_time": 5}, {"start_time": -1, "end_time": 2},
        {"start_time": 0, "end_time": 4, "title": "  One \n two  "},
        {"start_time": 3, "end_time": 9, "title": 7},  # overlaps the one before; a title that is no text
        {"start_time": 9, "end_time": 9.2, "title": "a marker"},
        {"start_time": 9.2, "end_time": 99, "title": "x" * 5000},  # past the end
    ]
    assert chapters.clean(raw, duration=20.0) == [
        {"title": "One two", "start": 0.0, "end": 4.0},
        {"title": "Chapter 5", "start": 4.0, "end": 9.0},
        {"title": "x" * 999 + "…", "start": 9.2, "end": 20.0},
    ]
    many = [{"start_time": n, "end_time": n + 1, "title": str(n)} for n in range(10_000)]
    assert len(chapters.clean(many)) == chapters.MAX_CHAPTERS
    assert chapters.clean([{"start_time": 0, "end_time": 5}]) == []  # one chapter is no split
    assert chapters.clean({"start_time": 0}) == [] and chapters.clean(None) == []
