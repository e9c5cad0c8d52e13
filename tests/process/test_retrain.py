"""Ingest, retrain, champion and challenger with real ``edgecast`` processes on real data.

b13's first half of 2016 is the data folder a champion is trained and promoted on; the next
five weeks arrive through ``edgecast ingest``; ``edgecast retrain`` trains a candidate on all but
the last two weeks and judges both on those two weeks. A deliberately weak candidate (cold, one
epoch) is then refused, kept aside, and the champion stays.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgecast.promotion import CHAMPIONS_FILE, champion_of
from edgecast_harness.bundle_faults import read_manifest
from edgecast_harness.paths import DATA
from edgecast_harness.predictor import edgecast

SHIPPED = (DATA / "electricity" / "b13" / "2016.csv").read_text().splitlines(keepends=True)
HEADER, ROWS = SHIPPED[0], SHIPPED[1:]
FIRST_DAYS, NEW_DAYS = 182, 35  # to 2016-07-01, then to 2016-08-05
EPOCHS = "12"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(DATA / "weather", root / "weather")
    (root / "electricity" / "b13").mkdir(parents=True)
    (root / "electricity" / "b13" / "2016.csv").write_text(
        HEADER + "".join(ROWS[: 24 * FIRST_DAYS])
    )
    return root


def retrain(store: Path, data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = edgecast(
        "retrain", "--building", "b13", "--store", str(store), "--data-dir", str(data_dir),
        "--no-litert", *args, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def test_ingest_then_retrain_judges_candidate_and_champion_on_the_same_new_weeks(
    data_dir: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    edgecast(
        "train", "--building", "b13", "--data-dir", str(data_dir), "--until", "2016-07-01",
        "--epochs", EPOCHS, "--no-litert", "--out", str(store),
    )  # fmt: skip
    (first,) = (p.name for p in store.iterdir())
    # A store that edgecast train filled records no champion: retrain asks which one serves.
    code, _, err = retrain(store, data_dir)
    assert code == 2 and f"edgecast promote {first} --store {store}" in err
    promoted = edgecast("promote", first, "--store", str(store))
    assert promoted.stdout == f"b13: {first} is the champion (before: none)\n"

    # The champion saw nothing after 2016-07-01: no two weeks that neither trained on yet.
    code, _, err = retrain(store, data_dir)
    assert code == 2 and "fewer than the 14-day held-out period" in err, err

    new = tmp_path / "new.csv"
    new.write_text(HEADER + "".join(ROWS[24 * FIRST_DAYS : 24 * (FIRST_DAYS + NEW_DAYS)]))
    malformed = tmp_path / "malformed.csv"
    malformed.write_text(new.read_text() + "2016-08-05 00:30:00,12.0\n")
    before = (data_dir / "electricity" / "b13" / "2016.csv").read_bytes()
    refused = edgecast("ingest", "--building", "b13", "--data-dir", str(data_dir), str(malformed),
                       check=False)  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        f"edgecast ingest: refused, nothing written: {malformed}: line 842: 2016-08-05 00:30:00 "
        "is not on the hour (hourly readings only)\n"
    )
    assert (data_dir / "electricity" / "b13" / "2016.csv").read_bytes() == before
    ingested = edgecast("ingest", "--building", "b13", "--data-dir", str(data_dir), "-",
                        input=new.read_text())  # fmt: skip
    assert ingested.stdout.startswith("b13: 840 rows read, 840 new hours, 0 replaced")

    code, out, err = retrain(store, data_dir, "--epochs", "4")  # warm: a few epochs suffice
    assert code in (0, 3), err
    (line,) = out.splitlines()
    assert f"(warm start from {first})" in line and "held out 2016-07-22 to 2016-08-05" in line
    home = store if code == 0 else store / "refused"
    (candidate,) = (p for p in home.iterdir() if p.name.startswith("sbn-") and p.name != first)
    section = read_manifest(candidate)["promotion"]
    assert section["decision"] == ("promoted" if code == 0 else "refused")
    assert section["champion_id"] == first and section["start"] == "warm"
    assert section["candidate_mae"] > 0 and section["champion_mae"] > 0
    assert section["margin"] == 0.02
    assert section["period"] == {
        "from": "2016-07-22T00:00:00+00:00", "to": "2016-08-05T00:00:00+00:00", "days": 14,
    }  # fmt: skip
    assert f"{section['candidate_mae']:.3f}" in line and f"{section['champion_mae']:.3f}" in line
    champion = candidate.name if code == 0 else first
    assert champion_of(store, "b13") == champion
    edgecast("verify", str(candidate), "--runtime", "none")  # the section left the digests valid

    # A deliberately weak challenger: one epoch from a random draw.
    record = (store / CHAMPIONS_FILE).read_bytes()
    code, out, err = retrain(store, data_dir, "--cold", "--epochs", "1")
    assert code == 3, out + err
    assert "(cold start) REFUSED, kept for inspection" in out
    (weak,) = (p for p in (store / "refused").iterdir() if p.name not in (first, candidate.name))
    section = read_manifest(weak)["promotion"]
    assert section["decision"] == "refused" and section["start"] == "cold"
    assert section["champion_id"] == champion
    assert section["candidate_mae"] > section["champion_mae"]
    assert (store / CHAMPIONS_FILE).read_bytes() == record
    assert not (store / weak.name).exists()
    assert not [p.name for p in store.iterdir() if p.name.startswith(".retrain-")]
    assert json.loads(record)["champions"]["b13"]["model_id"] == champion
