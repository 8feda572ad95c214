"""Finished MP3s kept on disk, for a platform that cannot send an upload again by reference (Discord).

One folder, one file per delivered part, named by what it is. The folder's total
size is capped; the least recently used file goes first. Using a file touches
its modification time, so the folder itself is the LRU order: no index to keep
in step, and it survives restarts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


class FileCache:
    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root = root
        self.cap = cap_bytes

    @staticmethod
    def name(video_key: str, bitrate: int, limit: int | None, part: int, variant: str = "") -> str:
        """The file name of one delivered part: the same video, bitrate, limit, part (and variant), the same name."""
        key = f"{video_key}\n{bitrate}\n{limit}\n{part}" + (f"\n{variant}" if variant else "")
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{digest}.mp3"

    def put(self, source: Path, name: str) -> Path | None:
        """Keep `source` as `name` (a hard link when possible); None when it alone is over the cap."""
        size = source.stat().st_size
        if size > self.cap:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / name
        temporary = self.root / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            os.link(source, temporary)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
        os.utime(target)
        self.evict(keep=target)
        return target

    def get(self, name: str) -> Path | None:
        """The kept file, marked as just used; None when it has gone."""
        path = self.root / Path(name).name
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove least recently used files until the folder is within its cap."""
        files = []
        for path in self.root.glob("*.mp3"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = []
        for _, size, path in sorted(files):
            if total <= self.cap:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        if removed:
            log.info("file cache: %d file(s) evicted, %d bytes kept", len(removed), total)
        return removed

