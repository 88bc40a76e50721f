"""A process waiting for a store's file that another process holds says so, and the holder lets go.

A DuckDB file takes one writer or many readers, and the embedded ClickHouse engine opens a folder
in one process at a time. A process that keeps one open between uses (a bot's writer through a
burst; an idle ``chdb://`` engine) looks for notes in ``<path>.readers/``: a process that wants the
file leaves one there while it waits, and the holder lets go when it finds a fresh one. A note
left by a process that died before removing it is ignored once older than ``NOTE_TTL_S``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

NOTE_TTL_S = 10.0  # how long a note is honoured (its process may have died)


class Note:
    """This thread's note in a store's waiting room; ``withdraw`` once the file is open."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def withdraw(self) -> None:
        path, self.path = self.path, None
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


class WaitingRoom:
    """The notes of the processes waiting for the store at ``path`` (``<path>.readers/``)."""

    def __init__(self, path: Path) -> None:
        self.folder = path.with_name(path.name + ".readers")

    @contextlib.contextmanager
    def waiting(self) -> Iterator[Note]:
        """A note in the room while the block runs (withdrawn at its end at the latest)."""
        path: Path | None = self.folder / f"{os.getpid()}-{threading.get_ident()}"
        try:
            self.folder.mkdir(exist_ok=True)
            path.touch()
        except OSError:
            path = None  # a read-only place: the holder still lets go between its uses
        note = Note(path)
        try:
            yield note
        finally:
            note.withdraw()

    def anyone_waiting(self) -> bool:
        try:
            now = time.time()
            with os.scandir(self.folder) as entries:
                return any(now - e.stat().st_mtime < NOTE_TTL_S for e in entries)
        except OSError:
            return False
