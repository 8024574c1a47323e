"""The write-ahead log: ``logs/metrics.jsonl`` and its rotated segments, read through durable cursors.

A point counts as scored when its line is in ``metrics.jsonl``; database forwarders tail the log, each
from its own cursor, and move the cursor only after the database acknowledged a batch. Layout::

    <dir>/metrics.jsonl               the active segment; appends go here (one write per tick)
    <dir>/metrics.jsonl.00000007      rotated segments, oldest = lowest number
    <dir>/spool/segment.json          {"active_seq": 8}: the sequence number of the active segment
    <dir>/spool/<consumer>.cursor     {"seq": 7, "offset": 123456}: next byte this consumer reads

A :class:`Position` ``(seq, offset)`` names a byte in segment ``seq``; it stays valid when the active
segment is renamed, because a rotated segment keeps the number it had while active.

Rotation (when the active segment reaches ``segment_bytes``), in this order:

1. rename ``metrics.jsonl`` -> ``metrics.jsonl.<active_seq>``, fsync the directory;
2. write ``segment.json`` with ``active_seq + 1`` (temp file + fsync + rename);
3. create a new, empty ``metrics.jsonl``.

On open the active number is ``max(recorded, highest rotated + 1)``: a kill between 1 and 2 leaves a
rotated segment numbered like the recorded active one, so the open bumps the number (and rewrites the
state); a kill after 2 only lacks the new empty file. A kill during an append leaves a torn last line
(no newline): it was never scored, so the open truncates it away and counts it (``torn_records``).

A cursor file is replaced atomically (temp file, fsync, rename). A forwarder writes the next cursor
file before it sends a batch (:meth:`Cursor.prepare`), so after the acknowledgement the commit is a
single rename: a kill in between resends one batch (at least once), it never skips one.

Space is bounded. Segments that every registered cursor has passed are deleted. If the segments
together exceed ``max_bytes``, the oldest rotated ones are deleted even if unread: each cursor behind
them jumps to the next segment, and the loss is counted (``dropped_records``) and logged as an error.
With no cursor (InfluxDB disabled) the log is plain retention: only ``max_bytes`` applies.

The defaults (``SpoolSettings``): 32 MiB segments, 512 MiB in total. A record is ~350 bytes, so 512 MiB
hold ~1.5 million records: an outage of ``1.5e6 * interval / series`` seconds, e.g. 2.9 years for one
series at 60 s, 10 days for 100 series at 60 s, 4.2 hours for 100 series at 1 s.

A cursor must be registered before the records it needs could be deleted: create every consumer's
cursor right after opening the log, before the first append. A cursor file with no registered
cursor in this process does not hold segments back.

Why this module is longer than the 450 lines every other module of ``core/`` keeps to: it is one
invariant (no scored record is lost silently: appended durably, read through cursors, deleted only
when every cursor passed it or counted as dropped). ``Cursor`` works inside ``MetricsLog``'s lock and
segment table, so splitting the two would spread that one invariant, and its crash cases, over two
files that can only be read together.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from loguru import logger

from core.errors import SinkError
from core.fsutil import atomic_write_json
from core.records import ScoredRecord

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "Cursor",
    "MetricsLog",
    "Position",
]

DEFAULT_SEGMENT_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_STATE_FILE = "segment.json"
_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SCAN_CHUNK = 1024 * 1024
_MAX_READ_CHUNK = 16 * 1024 * 1024


class Position(NamedTuple):
    """A place in the log: segment number, byte offset, and complete lines before it in the segment."""

    seq: int
    offset: int
    line: int = 0

    @property
    def key(self) -> tuple[int, int]:
        """Return ``(seq, offset)``, the part that orders positions."""
        return (self.seq, self.offset)


class _Segment:
    """Size and line count of one segment file (in memory; recomputed on open)."""

    __slots__ = ("lines", "size")

    def __init__(self, size: int, lines: int) -> None:
        self.size = size
        self.lines = lines


class MetricsLog:
    """The append-only, segmented, bounded JSON-lines log of scored records (thread-safe)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync: bool = True,
        name: str = "metrics.jsonl",
    ) -> None:
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(
                f"spool.max_bytes ({max_bytes}) must be at least spool.segment_bytes ({segment_bytes})"
            )
        self.dir = Path(directory)
        self.spool_dir = self.dir / "spool"
        self.name = name
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.appended_records = 0
        self.dropped_records = 0
        self.torn_records = 0
        self.torn_bytes = 0
        self.rotations = 0
        self.deleted_segments = 0
        self._lock = threading.RLock()
        self._segments: dict[int, _Segment] = {}
        self._cursors: dict[str, Cursor] = {}
        self._listeners: list[Callable[[], None]] = []
        self._fd: int | None = None
        self._closed = False
        self._active_seq = 1
        self._open()

    # -- paths and state --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Return the active segment's path (``<dir>/metrics.jsonl``)."""
        return self.dir / self.name

    @property
    def active_seq(self) -> int:
        """Return the sequence number of the active segment."""
        return self._active_seq

    def segment_path(self, seq: int) -> Path:
        """Return the path of segment ``seq`` (the active file if ``seq`` is the active number)."""
        return self.path if seq == self._active_seq else self.dir / f"{self.name}.{seq:08d}"

    def segments(self) -> list[int]:
        """Return the sequence numbers of every segment, oldest first (the last is the active one)."""
        with self._lock:
            return sorted(self._segments)

    def total_bytes(self) -> int:
        """Return the size of all segments together."""
        with self._lock:
            return sum(s.size for s in self._segments.values())

    def end(self) -> Position:
        """Return the position just after the last complete line."""
        with self._lock:
            active = self._segments[self._active_seq]
            return Position(self._active_seq, active.size, active.lines)

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(rf"^{re.escape(self.name)}\.(\d{{8,}})$")
        rotated = sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := pattern.match(p.name)))
        recorded = self._read_state()
        active = max(recorded or 1, rotated[-1] + 1 if rotated else 1)
        if recorded is not None and active != recorded:
            logger.warning(
                f"{self.dir}: finishing a rotation interrupted by a crash: active segment is now "
                f"{active} (state said {recorded})"
            )
        self._active_seq = active
        if recorded != active:
            self._write_state()
        for seq in rotated:
            path = self.segment_path(seq)
            size = path.stat().st_size
            self._segments[seq] = _Segment(size, _count_lines(path, size))
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._truncate_torn_tail()
        size = os.fstat(self._fd).st_size
        self._segments[active] = _Segment(size, _count_lines(self.path, size))
        self._sync_dir()

    def _truncate_torn_tail(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        keep = _last_newline_end(self._fd, size)
        if keep == size:
            return
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        self.torn_records += 1
        self.torn_bytes += size - keep
        logger.warning(
            f"{self.path}: removed a torn last line ({size - keep} bytes without a newline) left by a "
            "crash during an append; that record was never scored"
        )

    def _read_state(self) -> int | None:
        path = self.spool_dir / _STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return int(data["active_seq"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error(f"{path}: unreadable ({exc}); deriving the segment number from the files")
            return None

    def _write_state(self) -> None:
        _write_json(self.spool_dir / _STATE_FILE, {"active_seq": self._active_seq}, fsync=self.fsync)

    def _sync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- writing ----------------------------------------------------------------------------------

    def append(self, records: Sequence[ScoredRecord]) -> None:
        """Append records as lines in one write (then flush and fsync); return once they are logged."""
        if not records:
            return
        data = "".join([r.to_json() + "\n" for r in records]).encode("utf-8")
        with self._lock:
            if self._closed:
                raise SinkError(f"{self.path}: the metrics log is closed; records cannot be appended")
            if self._fd is None:
                self._reopen()
            if self._fd is None:
                raise SinkError(f"{self.path}: cannot open the metrics log; check the logs directory")
            active = self._segments[self._active_seq]
            try:
                _write_all(self._fd, data)
                if self.fsync:
                    os.fdatasync(self._fd)
            except OSError as exc:
                self._undo_partial_append(active.size)
                raise SinkError(
                    f"{self.path}: cannot append {len(records)} records ({exc.strerror}); "
                    "free disk space or fix the permissions of the logs directory"
                ) from exc
            active.size += len(data)
            active.lines += len(records)
            self.appended_records += len(records)
            if active.size >= self.segment_bytes:
                self._rotate()
            self._enforce_limits()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Append records durably (the :class:`~core.records.Sink` interface)."""
        self.append(records)

    def flush(self, timeout: float = 0.0) -> bool:
        """Return True: appends are written (and fsynced if enabled) before ``append`` returns."""
        return True

    def _undo_partial_append(self, size: int) -> None:
        # A half-written tick would glue the next append onto a torn line: cut it off now.
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            logger.error(f"{self.path}: cannot remove a partial append ({exc.strerror})")

    def _rotate(self) -> None:
        """Rename the active segment, record the new number, start an empty active file."""
        seq = self._active_seq
        target = self.dir / f"{self.name}.{seq:08d}"
        try:
            os.rename(self.path, target)
        except OSError as exc:
            logger.error(f"{self.path}: rotation to {target.name} failed ({exc.strerror}); will retry")
            return
        # From here on the renamed file is segment `seq` whatever fails: open() derives the same number.
        self._active_seq = seq + 1
        self._segments[seq + 1] = _Segment(0, 0)
        self.rotations += 1
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self._sync_dir()
            self._write_state()
        except OSError as exc:
            logger.error(f"{self.spool_dir / _STATE_FILE}: cannot record segment {seq + 1} ({exc.strerror})")
        self._reopen()

    def _reopen(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._sync_dir()
        except OSError as exc:
            logger.error(f"{self.path}: cannot create the active segment ({exc.strerror})")

    def _enforce_limits(self) -> None:
        """Delete segments every cursor has passed, then the oldest ones beyond ``max_bytes``."""
        rotated = sorted(s for s in self._segments if s != self._active_seq)
        if self._cursors and rotated:
            floor = min(self._normalize(c.committed).seq for c in self._cursors.values())
            for seq in rotated:
                if seq >= floor:
                    break
                self._delete_segment(seq)
            rotated = [s for s in rotated if s >= floor]
        total = sum(s.size for s in self._segments.values())
        for seq in rotated:
            if total <= self.max_bytes:
                break
            total -= self._segments[seq].size
            for cursor in self._cursors.values():
                cursor._drop_segment(seq, self._segments[seq])
            self._delete_segment(seq)

    def _delete_segment(self, seq: int) -> None:
        path = self.segment_path(seq)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            logger.error(f"{path}: cannot delete a consumed segment ({exc.strerror})")
            return
        del self._segments[seq]
        self.deleted_segments += 1

    # -- readers ----------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (from the appending thread) after every append."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` after appends."""
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _register(self, cursor: Cursor) -> None:
        if cursor.name in self._cursors:
            raise ValueError(f"{self.dir}: a cursor named {cursor.name!r} is already open on this log")
        self._cursors[cursor.name] = cursor

    def _normalize(self, pos: Position) -> Position:
        """Return ``pos`` moved past ended and deleted segments (call with the lock held)."""
        while True:
            segment = self._segments.get(pos.seq)
            if segment is None:
                later = [s for s in self._segments if s > pos.seq]
                if not later:
                    # A cursor ahead of the log: the files were replaced; start over at the end.
                    return self.end()
                pos = Position(min(later), 0, 0)
                continue
            if pos.seq != self._active_seq and pos.offset >= segment.size:
                pos = Position(pos.seq + 1, 0, 0)
                continue
            if pos.offset > segment.size:
                return Position(pos.seq, segment.size, segment.lines)
            return pos

    def lag(self, pos: Position) -> tuple[int, int]:
        """Return the records and bytes from ``pos`` to the end of the log."""
        with self._lock:
            records = bytes_ = 0
            for seq, segment in self._segments.items():
                if seq > pos.seq:
                    records += segment.lines
                    bytes_ += segment.size
                elif seq == pos.seq:
                    records += max(0, segment.lines - pos.line)
                    bytes_ += max(0, segment.size - pos.offset)
            return records, bytes_

    def close(self) -> None:
        """Close the active file; later appends raise :class:`SinkError`."""
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MetricsLog {self.path} active={self._active_seq} segments={len(self._segments)}>"


class Cursor:
    """One consumer's durable place in a :class:`MetricsLog` (``<dir>/spool/<name>.cursor``)."""

    def __init__(self, log: MetricsLog, name: str, *, start: Literal["oldest", "end"] = "oldest") -> None:
        if not _CONSUMER_NAME.match(name):
            raise ValueError(f"cursor name {name!r}: use letters, digits, '_', '.', '-' (at most 64)")
        self.log = log
        self.name = name
        self.path = log.spool_dir / f"{name}.cursor"
        self.dropped_records = 0
        self.corrupt_records = 0
        # Records the log deleted for space after this cursor read them but before they were
        # acknowledged: the forwarder still holds them and will send them, unless the process dies
        # first. Kept in the cursor file, so a restart counts them as dropped instead of losing them
        # silently (see _drop_segment).
        self._at_risk = 0
        self._risks: dict[int, tuple[int, int]] = {}  # segment -> in-flight lines [start, end)
        self._next_path = self.path.with_name(f".{self.path.name}.next")
        self._prepared: tuple[int, int] | None = None
        with log._lock:
            loaded = self._load()
            if loaded is None:
                first = min(log._segments)
                loaded = log.end() if start == "end" else Position(first, 0, 0)
            pos = log._normalize(loaded)
            self._committed = pos
            self._read_pos = pos
            log._register(self)
            self._persist(pos)

    @property
    def committed(self) -> Position:
        """Return the committed position (everything before it was acknowledged)."""
        return self._committed

    @property
    def read_position(self) -> Position:
        """Return where the next :meth:`read` starts."""
        return self._read_pos

    def _load(self) -> Position | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            seq, offset = int(data["seq"]), int(data["offset"])
            at_risk = int(data.get("at_risk", 0))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error(f"{self.path}: unreadable cursor ({exc}); starting from the oldest segment")
            return None
        if at_risk > 0:
            self.dropped_records += at_risk
            self.log.dropped_records += at_risk
            logger.error(
                f"{self.path}: {at_risk} records were in flight to {self.name} when the full spool deleted "
                "their segment, and the process stopped before the database acknowledged them: they are "
                "lost. Fix the database or raise spool.max_bytes"
            )
        segment = self.log._segments.get(seq)
        if segment is None:
            if seq < min(self.log._segments):
                logger.error(
                    f"{self.path}: segment {seq} was deleted before {self.name} read it (spool limit "
                    "reached in an earlier run); continuing with the oldest segment left"
                )
            return Position(seq, offset, 0)
        offset = min(offset, segment.size)
        line = _count_lines(self.log.segment_path(seq), offset)
        return Position(seq, offset, line)

    def _persist(self, pos: Position) -> None:
        data = {"seq": pos.seq, "offset": pos.offset}
        if self._at_risk:
            data["at_risk"] = self._at_risk
        try:
            _write_json(self.path, data, fsync=self.log.fsync)
        except OSError as exc:
            raise SinkError(f"{self.path}: cannot save the cursor ({exc.strerror})") from exc

    def read(self, max_records: int) -> tuple[list[ScoredRecord], Position]:
        """Return up to ``max_records`` records after the read position, and the position after them.

        Only complete lines are read, across segments in order. A line that is not a record is
        skipped (counted in ``corrupt_records``) and its bytes are still consumed.
        """
        if max_records < 1:
            raise ValueError(f"max_records must be positive, got {max_records}")
        records: list[ScoredRecord] = []
        pos = self._read_pos
        while len(records) < max_records:
            with self.log._lock:
                pos = self.log._normalize(pos)
                segment = self.log._segments.get(pos.seq)
                if segment is None:
                    break
                limit = segment.size
                ended = pos.seq != self.log._active_seq
                try:
                    # Open under the lock: a rotation renames the active file, never this descriptor.
                    fd = os.open(self.log.segment_path(pos.seq), os.O_RDONLY)
                except FileNotFoundError:
                    break
            try:
                data = _read_lines(fd, pos.offset, limit, max_records - len(records))
            finally:
                os.close(fd)
            if not data:
                if ended and pos.offset < limit:
                    self._skip_tail(pos, limit)
                    pos = Position(pos.seq + 1, 0, 0)
                    continue
                break
            # One decode per chunk: json.loads on str skips its per-call encoding detection.
            lines = data.decode("utf-8", errors="replace").split("\n")
            lines.pop()
            for raw in lines:
                try:
                    records.append(ScoredRecord.from_json(raw))
                except (ValueError, KeyError, TypeError) as exc:
                    self.corrupt_records += 1
                    where = self.log.segment_path(pos.seq)
                    logger.error(f"{where}: skipping a line that is not a record ({exc})")
            pos = Position(pos.seq, pos.offset + len(data), pos.line + len(lines))
        with self.log._lock:
            if pos.key > self._read_pos.key:
                self._read_pos = pos
            return records, pos

    def _skip_tail(self, pos: Position, limit: int) -> None:
        self.corrupt_records += 1
        logger.error(
            f"{self.log.segment_path(pos.seq)}: skipping {limit - pos.offset} bytes without a newline at "
            "the end of a rotated segment"
        )

    def prepare(self, pos: Position) -> None:
        """Write (and fsync) the cursor file for ``pos`` ahead of time, so ``commit(pos)`` is one rename.

        A forwarder prepares before it sends a batch: a kill between the database's acknowledgement
        and the commit resends the batch, and this keeps that window to a rename instead of two fsyncs.
        """
        try:
            _write_file(self._next_path, _cursor_json(pos), fsync=self.log.fsync)
        except OSError as exc:
            raise SinkError(f"{self._next_path}: cannot save the cursor ({exc.strerror})") from exc
        self._prepared = pos.key

    def commit(self, pos: Position) -> None:
        """Persist ``pos`` as acknowledged (atomically); segments every cursor passed are deleted."""
        with self.log._lock:
            prepared = self._prepared == pos.key
            self._prepared = None
            cleared = self._acknowledge_risk(pos)
            pos = self.log._normalize(pos)
            if pos.key <= self._committed.key:
                if cleared:
                    self._persist(self._committed)
                return
            if prepared and not self._at_risk:
                try:
                    os.replace(self._next_path, self.path)
                    self.log._sync_dir()  # after the rename: outside the window that matters
                except OSError as exc:
                    raise SinkError(f"{self.path}: cannot save the cursor ({exc.strerror})") from exc
            else:
                self._persist(pos)
            self._committed = pos
            if pos.key > self._read_pos.key:
                self._read_pos = pos
            self.log._enforce_limits()

    def _acknowledge_risk(self, pos: Position) -> bool:
        """Take the in-flight records of deleted segments up to ``pos`` off the risk; True if any."""
        if not self._risks:
            return False
        for seq, (start, end) in list(self._risks.items()):
            if pos.seq > seq:
                del self._risks[seq]
            elif pos.seq == seq and pos.line > start:
                if pos.line >= end:
                    del self._risks[seq]
                else:
                    self._risks[seq] = (pos.line, end)
        at_risk = sum(end - start for start, end in self._risks.values())
        changed = at_risk != self._at_risk
        self._at_risk = at_risk
        return changed

    def rewind(self) -> None:
        """Read again from the committed position (drop what was read but not committed)."""
        with self.log._lock:
            self._read_pos = self._committed

    def lag_records(self) -> int:
        """Return how many records are not yet committed (the spool depth)."""
        return self.log.lag(self._committed)[0]

    def lag_bytes(self) -> int:
        """Return how many bytes are not yet committed."""
        return self.log.lag(self._committed)[1]

    def unread_records(self) -> int:
        """Return how many records lie after the read position."""
        return self.log.lag(self._read_pos)[0]

    def _drop_segment(self, seq: int, segment: _Segment) -> None:
        """Jump past a segment the log deletes for space; count what this cursor had not read.

        Records of the segment already read but not acknowledged are in flight: the forwarder holds
        them and will still send them, so they are not counted as lost; but the committed position
        stays before them and their number goes into the cursor file (``at_risk``), so that a restart
        after a crash counts them as dropped instead of losing them without a trace.
        """
        done, read = self._committed, self._read_pos
        if done.seq > seq:
            return
        start = done.line if done.seq == seq else 0
        read_end = segment.lines if read.seq > seq else (read.line if read.seq == seq else 0)
        in_flight = max(0, read_end - start)
        lost = segment.lines - max(read_end, start)
        after = Position(seq + 1, 0, 0)
        if read.key < after.key:
            self._read_pos = after
        if in_flight:
            self._at_risk += in_flight
            self._risks[seq] = (start, read_end)
        elif done.key < after.key:
            self._committed = after
        try:
            self._persist(self._committed)
        except SinkError as exc:
            logger.error(str(exc))
        if lost > 0:
            self.dropped_records += lost
            self.log.dropped_records += lost
            logger.error(
                f"{self.log.dir}: spool full ({self.log.max_bytes} bytes): deleted segment {seq} with "
                f"{lost} records {self.name} had not sent; they are lost to {self.name}. Fix the "
                "database or raise spool.max_bytes"
            )

    def __repr__(self) -> str:
        return f"<Cursor {self.name} committed={self._committed.key} read={self._read_pos.key}>"


def _cursor_json(pos: Position) -> str:
    return json.dumps({"seq": pos.seq, "offset": pos.offset}) + "\n"


def _write_file(path: Path, text: str, *, fsync: bool) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())


def _write_json(path: Path, data: object, *, fsync: bool) -> None:
    if fsync:
        atomic_write_json(path, data, indent=None)
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _count_lines(path: Path, limit: int) -> int:
    """Return the number of newlines in the first ``limit`` bytes of ``path``."""
    count = 0
    remaining = limit
    with path.open("rb", buffering=0) as handle:
        while remaining > 0:
            chunk = handle.read(min(_SCAN_CHUNK, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count


def _last_newline_end(fd: int, size: int) -> int:
    """Return the offset just after the last newline in the first ``size`` bytes (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def _read_lines(fd: int, offset: int, limit: int, max_lines: int) -> bytes:
    """Return up to ``max_lines`` complete lines from ``offset`` (not past ``limit``), newline included."""
    chunk = min(max(65536, max_lines * 512), _MAX_READ_CHUNK)
    while True:
        size = min(chunk, limit - offset)
        if size <= 0:
            return b""
        data = os.pread(fd, size, offset)
        if data.count(b"\n") <= max_lines:
            end = data.rfind(b"\n") + 1
        else:
            end = 0
            for _ in range(max_lines):
                end = data.index(b"\n", end) + 1
        if end > 0 or len(data) < size or offset + size >= limit:
            return data[:end]
        chunk *= 2  # one line longer than the chunk: read more
