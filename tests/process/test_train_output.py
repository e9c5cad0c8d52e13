"""What ``edgecast train`` and ``verify`` print: progress a person can read (one line per epoch
in a log), the accuracy table and the bundle, and none of TensorFlow's or LiteRT's own lines."""

from __future__ import annotations

import re
from pathlib import Path

from edgecast_harness.predictor import edgecast

# What the frameworks write on their own: the CUDA probe and oneDNN notes of every start, absl's
# warning, the SavedModel export's listing, the converter's graph notes, LiteRT's delegate.
CHATTER = (
    "cuda",
    "oneDNN",
    "absl::InitializeLog",
    "Saved artifact",
    "Captures:",
    "TensorSpec",
    "Assets written",
    "NodeDef",
    "XNNPACK",
)
TABLE = re.compile(
    r"held-out accuracy for b13 \(\d+ forecast hours\)\n"
    r"model +MAE kWh +RMSE kWh +MAPE % +CV\(RMSE\) %\n"
    r"sbn( +\d+\.\d+){4}\n"
    r"seasonal_naive( +\d+\.\d+){4}\n"
    r"linear( +\d+\.\d+){4}\n"
    r"bundle: .*/sbn-b13-[^/\n]+\n"
)


def assert_no_chatter(*outputs: str) -> None:
    for output in outputs:
        for line in output.splitlines():
            assert not any(word in line for word in CHATTER), line


def test_train_prints_each_epoch_then_the_table_and_nothing_of_the_frameworks(tmp_path: Path):
    done = edgecast("train", "--building", "b13", "--epochs", "2", "--out", str(tmp_path))
    assert_no_chatter(done.stdout, done.stderr)
    assert TABLE.fullmatch(done.stdout), done.stdout
    progress = done.stderr.splitlines()
    assert re.fullmatch(r"b13: \d+ training, \d+ validation, \d+ held-out samples .*", progress[0])
    assert re.fullmatch(
        r"b13: epoch 1/2  loss \d\.\d{4}  val_loss \d\.\d{4}  best so far +\d+\.\d s", progress[1]
    ), progress[1]
    assert progress[2].startswith("b13: epoch 2/2  loss ")
    assert re.fullmatch(
        r"b13: ran all 2 epochs; kept epoch [12] \(val_loss \d\.\d{4}\); \d+\.\d s",
        progress[3],
    ), progress[3]
    assert len(progress) == 4, done.stderr

    # the bundle's LiteRT model was exported and passes the gate: verify says so, quietly too
    (bundle,) = tmp_path.iterdir()
    verified = edgecast("verify", str(bundle))
    assert_no_chatter(verified.stdout, verified.stderr)
    assert verified.stderr == ""
    assert "litert: parity ok" in verified.stdout


def test_quiet_train_prints_only_the_table_and_the_bundle(tmp_path: Path):
    done = edgecast(
        "train",
        "--building",
        "b13",
        "--epochs",
        "2",
        "--no-litert",
        "--quiet",
        "--out",
        str(tmp_path),
    )
    assert TABLE.fullmatch(done.stdout), done.stdout
    assert done.stderr == ""
