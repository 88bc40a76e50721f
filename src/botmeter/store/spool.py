"""Durable local fallback: batches the store could not take wait here, on disk, and are replayed.

Each batch is one Arrow IPC file, written whole to a temporary name (a short write on a nearly
full disk is continued or fails), fsynced, checked for size, renamed into place and the
directory fsynced, so a crash leaves either the whole batch or nothing; a temporary file left by
a failure is removed. At replay a file holding fewer events than its name says (truncated) is
never taken as the batch. Names start with the
time they were written, so replay goes in order across processes. A batch is removed only after
the store has taken it; the store skips event ids it already has, so replaying twice (a crash
between the write and the removal, two processes replaying at once) stores each event once.

A batch may also be *held* (``append(batch, hold=True)``): durable like any other, but locked by
this process, which writes it to the store itself and then ``discard``s it. Replays, here or in
another process, pass over a locked file; if the holder dies, the kernel drops the lock and the
batch is replayed like any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from ..exceptions import StoreUnavailable

log = logging.getLogger("botmeter")
SUFFIX = ".arrow"


@dataclass(frozen=True)
class SpoolDepth:
    batches: int
    events: int
    bytes: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._seq = 0
        self.refused_events = 0  # batches not taken because the spool was full or unwritable
        self.quarantined_events = 0  # spooled batches set aside in failed/ (unreadable, truncated)
        self.set_aside_events = 0  # events the store refused, kept in failed/ with the reason
        self.replayed_events = 0
        self._held: dict[str, tuple[int, int]] = {}  # name -> (locked descriptor, events)

    @property
    def failed_dir(self) -> Path:
        return self.directory / "failed"

    def _segments(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []

    def has_pending(self, skip_locked: bool = False) -> bool:
        """Whether any batch waits for replay; the writer asks every cycle, so it stops at the
        first file. This process's held batches do not wait for replay; with ``skip_locked``
        neither do those another process holds (or is replaying) now."""
        try:
            with os.scandir(self.directory) as entries:
                return any(
                    e.name.endswith(SUFFIX)
                    and e.name not in self._held
                    and not (skip_locked and _locked(e.path))
                    for e in entries
                )
        except FileNotFoundError:
            return False

    @property
    def held_events(self) -> int:
        """Events in the batches this process holds: durable, about to be written by it."""
        return sum(n for _, n in self._held.values())

    def depth(self) -> SpoolDepth:
        """The batches waiting for replay (not those this process holds)."""
        events = size = 0
        segments = [p for p in self._segments() if p.name not in self._held]
        for p in segments:
            events += _rows_in_name(p)
            with contextlib.suppress(FileNotFoundError):
                size += p.stat().st_size
        return SpoolDepth(len(segments), events, size)

    def append(self, batch: pa.Table, hold: bool = False) -> str | None:
        """Writes the batch durably; returns its name, or None (and counted) if the spool is full
        or cannot be written. With ``hold`` the file stays locked by this process until
        ``discard`` (stored) or ``let_go`` (left for replay)."""
        tmp: Path | None = None
        fd: int | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            data = _ipc_bytes(batch)
            if self.depth().bytes + data.size > self.max_bytes:
                self.refused_events += batch.num_rows
                log.error(
                    "botmeter: spool %s is full (%d bytes max); %d events not spooled",
                    self.directory,
                    self.max_bytes,
                    batch.num_rows,
                )
                return None
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-n{batch.num_rows}{SUFFIX}"
            tmp = self.directory / f".{name}.tmp"
            fd = _write_whole(tmp, data, keep=hold)
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # before the rename: no replay can take it first
            os.rename(tmp, self.directory / name)
            tmp = None
            _fsync_dir(self.directory)
            if fd is not None:
                self._held[name] = (fd, batch.num_rows)
                fd = None
            return name
        except OSError as exc:
            self.refused_events += batch.num_rows
            log.error("botmeter: cannot spool %d events to %s: %s", batch.num_rows, self.directory, exc)
            return None
        finally:
            if fd is not None:
                os.close(fd)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def discard(self, name: str) -> None:
        """Removes a held batch the store has taken (a crash before this replays it, deduplicated)."""
        fd, _ = self._held.pop(name)
        try:
            (self.directory / name).unlink(missing_ok=True)
        finally:
            os.close(fd)

    def let_go(self, name: str) -> int:
        """Unlocks a held batch the store could not take: it waits for replay like any other.
        Returns its number of events."""
        fd, events = self._held.pop(name)
        os.close(fd)
        return events

    def set_aside(self, batch: pa.Table, reason: str) -> bool:
        """Keeps events the store refused in ``failed/``, with the reason beside them (never raises)."""
        self.set_aside_events += batch.num_rows
        try:
            self.failed_dir.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}-n{batch.num_rows}{SUFFIX}"
            _write_whole(self.failed_dir / name, _ipc_bytes(batch))
            (self.failed_dir / f"{name}.reason.txt").write_text(
                reason + "\n", encoding="utf-8", errors="replace"
            )
            return True
        except OSError as exc:
            log.error(
                "botmeter: cannot keep %d refused events in %s: %s", batch.num_rows, self.failed_dir, exc
            )
            return False

    def replay(self, write: Callable[[pa.Table], int], budget_s: float = 5.0) -> int:
        """Hands spooled batches to ``write`` in order, stopping at the first the store cannot take.

        Returns how many events were replayed."""
        replayed = 0
        deadline = time.monotonic() + budget_s
        for path in self._segments():
            if time.monotonic() > deadline:
                break
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # another process replayed it
            except OSError as exc:
                self._quarantine(path, f"cannot open: {exc}")
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    self._quarantine(path, "not a file")
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # another process is replaying it now
                if not path.exists():
                    continue
                with os.fdopen(os.dup(fd), "rb") as f:
                    try:
                        table = ipc.open_stream(f).read_all()
                    except (pa.ArrowInvalid, OSError) as exc:
                        self._quarantine(path, f"unreadable: {exc}")
                        continue
                expected = _rows_in_name(path)
                if expected and table.num_rows != expected:
                    self._quarantine(path, f"truncated: {table.num_rows} of {expected} events")
                    continue
                try:
                    write(table)
                except StoreUnavailable:
                    raise
                except Exception as exc:  # the store rejects this batch: keep it aside, do not block the rest
                    self._quarantine(path, str(exc))
                    continue
                path.unlink(missing_ok=True)
                replayed += table.num_rows
                self.replayed_events += table.num_rows
            finally:
                os.close(fd)
        if replayed:
            _fsync_dir(self.directory)
        return replayed

    def _quarantine(self, path: Path, reason: str) -> None:
        failed = self.failed_dir
        failed.mkdir(exist_ok=True)
        self.quarantined_events += _rows_in_name(path)
        log.error("botmeter: spooled batch %s set aside (%s); moved to %s", path.name, reason, failed)
        try:
            os.rename(path, failed / path.name)
        except FileNotFoundError:
            return
        except OSError:
            # Whatever it is, it must not block the rest: move it under another name.
            os.rename(path, failed / f"{path.name}.{time.time_ns()}")
        with contextlib.suppress(OSError):
            (failed / f"{path.name}.reason.txt").write_text(reason + "\n", encoding="utf-8", errors="replace")


def _ipc_bytes(batch: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_table(batch)
    return sink.getvalue()


def _write_whole(path: Path, data: pa.Buffer, keep: bool = False) -> int | None:
    """Writes all of ``data`` to a new file and fsyncs it, or raises ``OSError``; with ``keep``
    returns the open descriptor.

    ``os.write`` may write part of a buffer (a nearly full disk): the rest is written until it is
    all there or the disk says no; the size on disk is checked before the file counts."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    kept = False
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(f"short write to {path}")
            view = view[written:]
        os.fsync(fd)
        if os.fstat(fd).st_size != data.size:
            raise OSError(f"{path}: {os.fstat(fd).st_size} bytes on disk, {data.size} written")
        kept = keep
        return fd if keep else None
    finally:
        if not kept:
            os.close(fd)


def _locked(path: str) -> bool:
    """Whether another process holds the file (writing it to the store itself, or replaying it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # replayed meanwhile
    except OSError:
        return False  # unreadable: replay sets it aside
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also lets go of the lock just taken
    return False


def _rows_in_name(path: Path) -> int:
    stem = path.name[: -len(SUFFIX)]
    tail = stem.rsplit("-n", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
