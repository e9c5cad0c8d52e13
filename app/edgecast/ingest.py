"""Append new hourly readings of one building to a data folder, idempotently.

Readings come as CSV in the archive's format (``datetime,equipment load [kWh]``, timestamps
without an offset are UTC) or as JSON lines with the same two keys. The rules:

- a file is refused whole, before anything is written, when a line cannot be read as a reading:
  a missing column, a timestamp that is not one or not on the hour, a line that is not JSON;
- a value that is zero, negative, not finite or not a number is a missing hour, as
  ``edgecast.data`` reads it: nothing is written for it, and it never erases a stored reading;
- rows may come in any order; several readings of one hour are merged, the last valid one wins;
- a reading for an hour already stored replaces it when the value differs (a correction), and
  leaves the file untouched when it is the same number: a second ingest of the same file
  changes nothing, byte for byte;
- new hours go to ``<year>.csv`` of their UTC year; a stored hour is corrected in the file that
  holds it. Each changed file is written whole, sorted by hour, to a temporary file in the same
  folder, flushed to disk and renamed over the old one, so a reader sees the old file or the
  new one, never a part; an interrupted ingest leaves only dot-named temporary files, which the
  next ingest removes. Ingests of one building take turns on the lock file ``.ingest.lock``
  in its folder (``edgecast.data`` reads only ``*.csv``).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from edgecast.data import LOAD_COLUMN, TIME_COLUMN

HEADER = f"{TIME_COLUMN},{LOAD_COLUMN}\n"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BUILDING_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LOCK_NAME = ".ingest.lock"
TEMP_SUFFIX = ".tmp"


class IngestError(ValueError):
    """The readings (or the stored files) cannot be merged; one line saying where and why."""


@dataclass(frozen=True)
class Reading:
    """One row: its line, its hour (UTC) and its value's text as given (stripped)."""

    line: int
    hour: datetime
    text: str


@dataclass(frozen=True)
class IngestReport:
    building: str
    rows: int
    new: int
    replaced: int
    unchanged: int
    missing: int
    first: datetime
    last: datetime
    files: tuple[str, ...]

    def line(self) -> str:
        return (
            f"{self.building}: {self.rows} rows read, {self.new} new hours, {self.replaced} "
            f"replaced, {self.unchanged} unchanged, {self.missing} missing (not stored), span "
            f"{self.first:%Y-%m-%d %H:%M} to {self.last:%Y-%m-%d %H:%M} UTC"
        )


def _hour(text: object, where: str) -> datetime:
    if not isinstance(text, str):
        raise IngestError(f"{where}: the {TIME_COLUMN} is {text!r}, not a date and time")
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise IngestError(
            f"{where}: {text!r} is not a date and time (YYYY-MM-DD HH:MM:SS, UTC)"
        ) from None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise IngestError(f"{where}: {text.strip()} is not on the hour (hourly readings only)")
    return value


def _value_text(value: object, where: str) -> str:
    """The reading's text as given; "" for a JSON null."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise IngestError(f"{where}: the {LOAD_COLUMN} is {value!r}, not a number")
    return value.strip() if isinstance(value, str) else repr(value)


def valid_values(texts: list[str]) -> list[bool]:
    """Which values are readings: numbers above zero, as ``edgecast.data`` reads them (and
    finite); zero, negative or unparsable values are missing hours."""
    numbers = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").astype(float)
    return [bool(math.isfinite(n) and n > 0) for n in numbers]


def _csv_readings(text: str, source: str, *, strict_header: bool) -> list[Reading]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise IngestError(f"{source}: line 1: no header (expected {HEADER.strip()!r})")
    header = [name.strip() for name in header]
    if strict_header and header != [TIME_COLUMN, LOAD_COLUMN]:
        raise IngestError(
            f"{source}: line 1: columns {header}, not the archive's {HEADER.strip()!r}"
        )
    missing = [name for name in (TIME_COLUMN, LOAD_COLUMN) if name not in header]
    if missing:
        raise IngestError(f"{source}: line 1: no column {missing[0]!r} (columns: {header})")
    at_time, at_load = header.index(TIME_COLUMN), header.index(LOAD_COLUMN)
    readings = []
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        if not row:
            continue
        if len(row) != len(header):
            raise IngestError(f"{where}: {len(row)} fields, the header has {len(header)}")
        hour = _hour(row[at_time], where)
        readings.append(Reading(reader.line_num, hour, _value_text(row[at_load], where)))
    return readings


def _json_readings(text: str, source: str) -> list[Reading]:
    readings = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}: line {number}"
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise IngestError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise IngestError(f"{where}: a JSON {type(item).__name__}, not an object")
        for key in (TIME_COLUMN, LOAD_COLUMN):
            if key not in item:
                raise IngestError(f"{where}: no key {key!r} (keys: {sorted(item)})")
        hour = _hour(item[TIME_COLUMN], where)
        readings.append(Reading(number, hour, _value_text(item[LOAD_COLUMN], where)))
    return readings


def parse_readings(data: bytes, source: str) -> list[Reading]:
    """Every reading of a CSV or JSON-lines file, or IngestError naming the first bad line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{source}: byte {exc.start}: not UTF-8 text") from None
    if text.lstrip().startswith("{"):
        readings = _json_readings(text, source)
    else:
        readings = _csv_readings(text, source, strict_header=False)
    if not readings:
        raise IngestError(f"{source}: holds no readings")
    return readings


def _merged(readings: list[Reading]) -> dict[datetime, str]:
    """One value per hour: the last valid reading, or "" when none of the hour's is valid."""
    merged: dict[datetime, str] = {}
    valid = valid_values([r.text for r in readings])
    for ok, reading in sorted(zip(valid, readings, strict=True), key=lambda p: p[1].line):
        if ok or reading.hour not in merged:
            merged[reading.hour] = reading.text if ok else ""
    return merged


def _same(stored: str, new: str) -> bool:
    try:
        return float(stored) == float(new)
    except ValueError:
        return False


def _content(rows: dict[datetime, str]) -> bytes:
    lines = [HEADER, *(f"{hour:{TIME_FORMAT}},{rows[hour]}\n" for hour in sorted(rows))]
    return "".join(lines).encode()


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One ingest per building at a time; leftovers of an interrupted one are removed."""
    with open(folder / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in folder.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink()
        yield


def _write_atomically(files: dict[Path, bytes]) -> None:
    """Stages every file (written, flushed to disk), then renames each over its old one."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, content in files.items():
            temp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
            staged.append((temp, path))
            with open(temp, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        for temp, path in staged:
            os.replace(temp, path)
        staged = []
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
    for folder in {path.parent for path in files}:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def ingest(
    building: str, data: bytes, data_dir: Path, *, source: str, new_building: bool = False
) -> IngestReport:
    """Merges the readings in ``data`` into ``data_dir/electricity/<building>/``."""
    if not BUILDING_PATTERN.fullmatch(building):
        raise IngestError(f"{building!r} is not a building id (letters, digits, '.', '_', '-')")
    parsed = parse_readings(data, source)
    readings = _merged(parsed)
    folder = Path(data_dir) / "electricity" / building
    if not folder.is_dir():
        if not new_building:
            parent = folder.parent
            known = (
                sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            )
            raise IngestError(
                f"no building {building!r} in {parent} (known: {', '.join(known) or 'none'}); "
                "pass --new to start one"
            )
        folder.mkdir(parents=True)
    with _locked(folder):
        stored: dict[Path, dict[datetime, str]] = {}
        where: dict[datetime, Path] = {}
        for path in sorted(folder.glob("*.csv")):
            rows = stored.setdefault(path, {})
            text = path.read_bytes().decode("utf-8-sig", errors="replace")
            for reading in _csv_readings(text, str(path), strict_header=True):
                if reading.hour not in where:  # edgecast.data keeps the first of duplicates
                    where[reading.hour] = path
                    rows[reading.hour] = reading.text
        new = replaced = unchanged = missing = 0
        changed: set[Path] = set()
        for hour, text in readings.items():
            if not text:
                missing += 1
                continue
            path = where.get(hour)
            if path is not None and _same(stored[path][hour], text):
                unchanged += 1
                continue
            if path is None:
                path = folder / f"{hour.year}.csv"
                new += 1
            else:
                replaced += 1
            stored.setdefault(path, {})[hour] = text
            changed.add(path)
        _write_atomically({path: _content(stored[path]) for path in sorted(changed)})
    hours = sorted(readings)
    return IngestReport(
        building=building,
        rows=len(parsed),
        new=new,
        replaced=replaced,
        unchanged=unchanged,
        missing=missing,
        first=hours[0],
        last=hours[-1],
        files=tuple(path.name for path in sorted(changed)),
    )
