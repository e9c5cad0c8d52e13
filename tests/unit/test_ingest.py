"""``edgecast ingest``'s merge rules, on the shipped readings of b13."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from edgecast.data import load_building
from edgecast.ingest import HEADER, IngestError, ingest
from edgecast_harness.paths import DATA

SHIPPED = (DATA / "electricity" / "b13" / "2016.csv").read_text().splitlines(keepends=True)
ROWS = SHIPPED[1:]  # "2016-01-01 00:00:00,26.7\n", one an hour
KEPT = 24 * 60  # January and February (2016 is a leap year) are in the folder before each test


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "electricity" / "b13"
    folder.mkdir(parents=True)
    (folder / "2016.csv").write_text(HEADER + "".join(ROWS[:KEPT]))
    return tmp_path / "data"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def csv_of(rows: list[str]) -> bytes:
    return (HEADER + "".join(rows)).encode()


def loads(data_dir: Path) -> np.ndarray:
    return load_building("b13", data_dir, weather_station=None)["load"].to_numpy()


def test_new_hours_are_appended_and_read_as_the_archive_would_be(data_dir: Path) -> None:
    march = ROWS[KEPT : KEPT + 24 * 31]
    report = ingest("b13", csv_of(march), data_dir, source="march.csv")
    assert (report.rows, report.new, report.replaced, report.unchanged) == (744, 744, 0, 0)
    assert report.line() == (
        "b13: 744 rows read, 744 new hours, 0 replaced, 0 unchanged, 0 missing (not stored), "
        "span 2016-03-01 00:00 to 2016-03-31 23:00 UTC"
    )
    # The file is now the shipped file's first three months, byte for byte.
    written = (data_dir / "electricity" / "b13" / "2016.csv").read_text()
    assert written == "".join(SHIPPED[: 1 + KEPT + 24 * 31])


def test_a_second_ingest_of_the_same_file_changes_nothing(data_dir: Path) -> None:
    march = csv_of(ROWS[KEPT : KEPT + 24 * 31])
    ingest("b13", march, data_dir, source="march.csv")
    path = data_dir / "electricity" / "b13" / "2016.csv"
    before, stat = snapshot(data_dir), path.stat()
    again = ingest("b13", march, data_dir, source="march.csv")
    assert (again.new, again.replaced, again.unchanged) == (0, 0, 744)
    assert snapshot(data_dir) == before
    assert path.stat().st_mtime_ns == stat.st_mtime_ns  # not even rewritten
    assert not again.files


def test_rows_out_of_order_and_duplicates_are_merged_the_last_valid_reading_winning(
    data_dir: Path,
) -> None:
    week = ROWS[KEPT : KEPT + 24 * 7]
    shuffled = week[:]
    random.Random(0).shuffle(shuffled)
    first_hour = week[0].split(",")[0]
    corrections = [
        f"{first_hour},999.5\n",  # a correction of the first hour, given later in the file
        f"{first_hour},0\n",  # then a missing reading of it: never erases a real one
        week[5],  # an exact duplicate
    ]
    report = ingest("b13", csv_of(shuffled + corrections), data_dir, source="week.csv")
    assert (report.rows, report.new, report.replaced, report.unchanged) == (171, 168, 0, 0)
    expected = "".join(SHIPPED[: 1 + KEPT + 24 * 7]).replace(week[0], f"{first_hour},999.5\n")
    assert (data_dir / "electricity" / "b13" / "2016.csv").read_text() == expected


def test_a_stored_hour_is_corrected_in_place_and_every_other_row_kept(data_dir: Path) -> None:
    stored = ROWS[100].split(",")[0]
    report = ingest("b13", csv_of([f"{stored},77.7\n"]), data_dir, source="fix.csv")
    assert (report.new, report.replaced, report.unchanged) == (0, 1, 0)
    lines = (data_dir / "electricity" / "b13" / "2016.csv").read_text().splitlines(keepends=True)
    assert lines == [HEADER, *ROWS[:100], f"{stored},77.7\n", *ROWS[101:KEPT]]


def test_zero_negative_and_unparsable_values_are_missing_hours(data_dir: Path) -> None:
    hours = [row.split(",")[0] for row in ROWS[KEPT : KEPT + 4]]
    bad = [f"{hours[0]},0\n", f"{hours[1]},-3.5\n", f"{hours[2]},n/a\n", f"{hours[3]},12.5\n"]
    report = ingest("b13", csv_of(bad), data_dir, source="bad.csv")
    assert (report.new, report.missing) == (1, 3)
    series = loads(data_dir)
    assert len(series) == KEPT + 4
    assert np.isnan(series[KEPT : KEPT + 3]).all() and series[-1] == 12.5


def test_json_lines_give_the_same_folder_as_csv(data_dir: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    (twin / "electricity" / "b13").mkdir(parents=True)
    (twin / "electricity" / "b13" / "2016.csv").write_bytes(
        (data_dir / "electricity" / "b13" / "2016.csv").read_bytes()
    )
    march = ROWS[KEPT : KEPT + 48]
    ingest("b13", csv_of(march), data_dir, source="march.csv")
    lines = []
    for row in march:
        stamp, value = row.strip().split(",")
        lines.append(json.dumps({"datetime": stamp, "equipment load [kWh]": float(value)}))
    report = ingest("b13", "\n".join(lines).encode(), twin, source="march.jsonl")
    assert report.new == 48
    assert snapshot(twin) == snapshot(data_dir)


def test_times_with_an_offset_are_stored_in_utc_and_new_years_get_their_own_file(
    data_dir: Path,
) -> None:
    rows = ["2016-12-31T23:00:00Z,10.5\n", "2017-01-01T01:00:00+01:00,11.5\n"]
    report = ingest("b13", csv_of(rows), data_dir, source="new-year.csv")
    assert report.files == ("2016.csv", "2017.csv")
    folder = data_dir / "electricity" / "b13"
    assert (folder / "2016.csv").read_text().endswith("2016-12-31 23:00:00,10.5\n")
    assert (folder / "2017.csv").read_text() == HEADER + "2017-01-01 00:00:00,11.5\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (HEADER + "2016-03-01 00:00:00,1.0\n2016-03-01 01:00,2.0,3\n", "line 3: 3 fields"),
        (HEADER + "2016-03-01 00:00:00,1.0\nyesterday,2.0\n", "line 3: 'yesterday' is not a date"),
        (HEADER + "2016-03-01 00:30:00,1.0\n", "line 2: 2016-03-01 00:30:00 is not on the hour"),
        ("time,kwh\n2016-03-01 00:00:00,1.0\n", "line 1: no column 'datetime'"),
        (
            '{"datetime": "2016-03-01 00:00:00", "equipment load [kWh]": 1}\n{"datetime": ',
            "line 2: not JSON",
        ),
        (
            '{"datetime": "2016-03-01 00:00:00", "kwh": 1}\n',
            "line 1: no key 'equipment load [kWh]'",
        ),
        (
            '{"datetime": "2016-03-01 00:00:00", "equipment load [kWh]": [1]}\n',
            "line 1: the equipment",
        ),
        (HEADER, "holds no readings"),
        (HEADER.encode() + b"2016-03-01 00:00:00,\xff\n", "not UTF-8"),
    ],
)
def test_a_malformed_file_is_refused_before_anything_is_written(
    data_dir: Path, content: str | bytes, message: str
) -> None:
    # Valid readings come first: none of them may reach the folder.
    data = content.encode() if isinstance(content, str) else content
    before = snapshot(data_dir)
    with pytest.raises(IngestError, match="^new.csv: .*" + re.escape(message)):
        ingest("b13", data, data_dir, source="new.csv")
    assert snapshot(data_dir) == before


def test_a_building_not_in_the_folder_needs_new(data_dir: Path) -> None:
    rows = csv_of(ROWS[:24])
    before = snapshot(data_dir)
    with pytest.raises(IngestError, match=r"no building 'b99' .*known: b13.*pass --new"):
        ingest("b99", rows, data_dir, source="b99.csv")
    assert snapshot(data_dir) == before
    report = ingest("b99", rows, data_dir, source="b99.csv", new_building=True)
    assert report.new == 24
    written = (data_dir / "electricity" / "b99" / "2016.csv").read_text()
    assert written == "".join(SHIPPED[:25])
    with pytest.raises(IngestError, match="not a building id"):
        ingest("../b13", rows, data_dir, source="b99.csv", new_building=True)


def test_leftovers_of_an_interrupted_ingest_are_removed_and_never_read(data_dir: Path) -> None:
    folder = data_dir / "electricity" / "b13"
    (folder / ".2016.csv.4242.tmp").write_text("half a file")
    ingest("b13", csv_of(ROWS[KEPT : KEPT + 2]), data_dir, source="two.csv")
    assert sorted(p.name for p in folder.iterdir()) == [".ingest.lock", "2016.csv"]
