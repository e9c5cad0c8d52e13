"""Continuous training on a replay of real months, time compressed (issue 14's proof; not a test).

A champion is trained on a shipped building's readings before ``--start`` (its training ends a
week earlier, so that the first weekly cycle has 14 held-out days neither model trained on) and
served by a small fleet of real ``edgecast serve`` processes (LiteRT, shadow scoring on, admin
API): the first node is the canary, the others are the rest of the fleet; a control node
outside the loop (``--no-control`` leaves it out) keeps the first champion all along, for
comparison. Then the following days are replayed one by one:

* a client sends each node the day's real consecutive hourly windows (600 hours each, with
  ``last_timestamp`` and ``series``), as fast as ``--rate`` allows: the predictors score their
  forecasts against the actuals that later windows carry (live accuracy), nothing waits real
  hours;
* the day's readings go into the cloud's data folder through ``edgecast ingest``;
* every ``--drift-check-hours`` the fleet's status rows (``edgecast.status``, as the playbooks
  read them) go through the drift rule (``edgecast.drift``, factor 1.3 over at least 24 hours);
* a cycle runs every 7 days, or sooner (``--drift-cooldown-days`` after the last one) when the
  fleet drifted: ``edgecast retrain --json`` (champion/challenger), the promoted candidate
  checked as rollout-model.yml checks it (``check_not_refused``), copied into the canary's
  store and hot swapped in through the admin API while the next day's traffic flows; after
  ``--analysis-days`` of replayed traffic the canary is judged by ``edgecast.canary.judge`` on
  its status row (new against old on the same hours, no 5xx, p99), then the rest of the fleet
  swaps, or the canary rolls back through the admin API.

These are the steps of ``ansible-playbook continuous-training.yml`` on the embedded default
(``playbooks/retrain.yml``, ``playbooks/canary.yml``), driven directly: a playbook run per cycle
costs more than the cycle itself on 2 cores, and its analysis window is wall-clock time, where
here it is replayed days. tests/process/test_continuous_training.py runs the playbook itself.

Two cycles are made to fail on purpose: at ``--worse-candidate-cycle`` a deliberately worse
candidate (``retrain --cold --epochs 1``) is given to champion/challenger before the real
retrain, and must be refused and stay in the cloud; at ``--bad-canary-cycle`` a bundle that
passes every bundle check and the parity gate but forecasts badly (``train --epochs 1``) goes
to the canary instead of a retrain, and must be rolled back on live evidence. From
``--step-day`` on, the replayed readings (ingested and sent) are multiplied by
``--step-factor``: a real step change in the building's load, which the drift rule must catch.

Output (``--out``): ``replay.json`` (the figures, the events, every cycle and the live-MAE
check), ``answers.jsonl`` (every answer: node, issue hour, model, shadow, status, forecast),
``checkpoints.jsonl`` (each node's live accuracy at the end of every day) and the plot
(``--png``, default ``OUT/ct-replay.png``).

    .venv/bin/python bench/ct_replay.py --out /tmp/ct-replay --png docs/ct-replay.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from edgecast.canary import CanaryRules, judge
from edgecast.data import LOAD_COLUMN, TIME_COLUMN, load_building
from edgecast.drift import DEFAULT_FACTOR, DEFAULT_MIN_HOURS
from edgecast.drift import check as drift_check
from edgecast.promotion import REFUSED_FOLDER, check_not_refused
from edgecast.status import Reading, http_reader, node_status
from edgecast_harness.paths import DATA
from edgecast_harness.predictor import PredictorLauncher, edgecast

HOUR = 3600
WINDOW = 600
HORIZON = 24
LIVE_WINDOWS = {"24h": 24, "7d": 168}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--building", default="b13")
    parser.add_argument("--start", default="2016-07-01", help="first replayed day (UTC)")
    parser.add_argument("--end", default="2017-07-01", help="day after the last replayed one")
    parser.add_argument("--step-day", default="2017-03-01", help="readings scaled from this day")
    parser.add_argument("--step-factor", type=float, default=1.5)
    parser.add_argument("--nodes", type=int, default=2, help="edge nodes; the first is the canary")
    parser.add_argument("--champion-epochs", type=int, default=6)
    parser.add_argument("--retrain-args", default="--epochs 8", help="edgecast retrain's options")
    parser.add_argument("--worse-candidate-cycle", type=int, default=1)
    parser.add_argument("--bad-canary-cycle", type=int, default=2)
    parser.add_argument("--analysis-days", type=int, default=2)
    parser.add_argument("--min-hours", type=int, default=24, help="canary: common hours needed")
    parser.add_argument("--drift-factor", type=float, default=DEFAULT_FACTOR)
    parser.add_argument("--drift-min-hours", type=int, default=DEFAULT_MIN_HOURS)
    parser.add_argument("--drift-check-hours", type=int, default=6)
    parser.add_argument(
        "--trigger",
        choices=["always", "drift"],
        default="always",
        help="a cycle retrains every time, or only when the fleet drifted (ct_trigger)",
    )
    parser.add_argument("--cycle-days", type=int, default=7)
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a node outside the loop that keeps the first champion, for comparison",
    )
    parser.add_argument(
        "--drift-deadline-hours",
        type=float,
        default=168,
        help="the step change must be caught within this (the drift rule's 7-day window)",
    )
    parser.add_argument("--rate", type=float, default=200, help="requests a second per node")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--png", type=Path, help="plot (default OUT/ct-replay.png)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument(
        "--replot", action="store_true", help="only draw the plot again from OUT's files"
    )
    args = parser.parse_args(argv)
    args.start, args.end = pd.Timestamp(args.start, tz="UTC"), pd.Timestamp(args.end, tz="UTC")
    args.step_day = pd.Timestamp(args.step_day, tz="UTC")
    if not args.start < args.end or args.nodes < 1:
        parser.error("--start must come before --end, and --nodes be at least 1")
    if args.step_day < args.start:
        parser.error("--step-day must not come before --start: the champion saw no step")
    return args


def epoch_hour(moment: pd.Timestamp) -> int:
    return int(moment.timestamp()) // HOUR


def stamp(hour: int) -> pd.Timestamp:
    return pd.Timestamp(hour * HOUR, unit="s", tz="UTC")


class Readings:
    """The building's real hourly loads, scaled by ``factor`` from ``step_hour`` on."""

    def __init__(self, building: str, step_hour: int, factor: float) -> None:
        loads = load_building(building, DATA, weather_station=None)["load"]
        if loads.isna().any():
            raise SystemExit(f"{building}: the shipped loads have missing hours; pick another")
        self.first_hour = epoch_hour(loads.index[0])
        hours = np.arange(len(loads)) + self.first_hour
        self.values = np.where(hours >= step_hour, loads.to_numpy() * factor, loads.to_numpy())
        self.last_hour = self.first_hour + len(loads) - 1

    def actual(self, hour: int) -> float:
        return float(self.values[hour - self.first_hour])

    def body(self, hour: int, series: str) -> dict[str, Any]:
        end = hour - self.first_hour + 1
        return {
            "loads": [float(v) for v in self.values[end - WINDOW : end]],
            "last_timestamp": stamp(hour).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "series": series,
        }

    def csv(self, first: int, last: int) -> str:
        rows = [f"{TIME_COLUMN},{LOAD_COLUMN}"]
        for hour in range(first, last + 1):
            rows.append(f"{stamp(hour):%Y-%m-%d %H:%M:%S},{self.actual(hour)!r}")
        return "\n".join(rows) + "\n"


@dataclass
class Node:
    name: str
    store: Path
    url: str
    token: str
    serving: str
    previous: str | None = None  # what shadow scoring forecasts with, when not the serving one
    busy: bool = False  # an admin call in flight: the shadow of a request is not known
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def shadow(self) -> str | None:
        if self.busy:
            return "?"
        return self.previous if self.previous not in (None, self.serving) else None

    def admin(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        self.busy = True
        try:
            answer = requests.post(
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=300,
            )
            if answer.status_code != 200:
                raise RuntimeError(f"{self.name}: POST {path} {answer.status_code} {answer.text}")
            model = requests.get(self.url + "/v1/model", timeout=30).json()
            self.serving = model["model_id"]
            self.previous = (model.get("previous") or {}).get("model_id")
            return model
        finally:
            self.busy = False

    def read(self) -> Reading:
        return http_reader(self.url, 30)()


@dataclass
class Pending:
    """A candidate on the canary, waiting for its analysis window to end."""

    candidate: str
    previous: str
    bundle: Path
    judge_after_day: int
    first: Reading | None = None
    deliberate: bool = False


class Replay:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.building = args.building
        self.readings = Readings(args.building, epoch_hour(args.step_day), args.step_factor)
        self.data = work / "cloud" / "data"
        self.store = work / "cloud" / "models"
        self.launcher = PredictorLauncher(work)
        self.nodes: list[Node] = []
        self.answers: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.cycles: list[dict[str, Any]] = []
        self.drift_checks: list[dict[str, Any]] = []
        self.pending: Pending | None = None
        self.lock = threading.Lock()
        self.worse_candidate: str | None = None
        self.control: Node | None = None
        self.drifting = False

    # -- setup ---------------------------------------------------------------------------------

    def cli(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        result = edgecast(*argv, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"edgecast {' '.join(argv)} exited {result.returncode}:\n"
                               f"{result.stdout[-3000:]}{result.stderr[-3000:]}")  # fmt: skip
        return result

    def ingest(self, first: int, last: int, new: bool = False) -> str:
        readings = self.work / "readings.csv"
        readings.write_text(self.readings.csv(first, last))
        argv = ["ingest", "--building", self.building, "--data-dir", str(self.data)]
        return self.cli(*argv, *(["--new"] if new else []), str(readings)).stdout.strip()

    def set_up(self) -> str:
        args = self.args
        shutil.copytree(DATA / "weather", self.data / "weather")
        start = epoch_hour(args.start)
        self.ingest(self.readings.first_hour, start - 1, new=True)
        until = args.start - pd.Timedelta(days=7)
        self.cli(
            "train", "--building", self.building, "--data-dir", str(self.data),
            "--until", f"{until:%Y-%m-%d}", "--epochs", str(args.champion_epochs),
            "--out", str(self.store), "--quiet",
        )  # fmt: skip
        (champion,) = (p.name for p in self.store.iterdir() if p.name.startswith("sbn-"))
        self.cli("promote", champion, "--store", str(self.store))
        names = ["canary", *(f"edge-{i + 1}" for i in range(1, args.nodes))]
        for name in [*names, *(["control"] if args.control else [])]:
            store = self.work / name / "models"
            shutil.copytree(self.store / champion, store / champion)
            predictor = self.launcher.start(
                store, "--model-id", champion, "--runtime", "litert", "--shadow",
                "--shadow-rate", "10000", admin=True,
            )  # fmt: skip
            node = Node(name, store, predictor.url, str(predictor.token), champion)
            if name == "control":
                self.control = node
            else:
                self.nodes.append(node)
        return champion

    # -- traffic -------------------------------------------------------------------------------

    def send(self, node: Node, hours: range) -> None:
        interval = 1.0 / self.args.rate
        for hour in hours:
            began = time.monotonic()
            shadow = node.shadow
            record: dict[str, Any] = {"node": node.name, "hour": hour}
            try:
                answer = node.session.post(
                    node.url + "/v1/predict", json=self.readings.body(hour, self.building),
                    timeout=30,
                )  # fmt: skip
                record["status"] = answer.status_code
                if answer.status_code == 200:
                    content = answer.json()
                    record["model_id"] = content["model_id"]
                    record["forecast"] = content["forecast_kwh"]
                else:
                    record["error"] = answer.text[:300]
            except requests.RequestException as exc:
                record["status"] = None
                record["error"] = f"{type(exc).__name__}: {exc}"
            if node.shadow != shadow:  # an admin call began or ended meanwhile
                shadow = "?"
            record["shadow"] = shadow
            with self.lock:
                self.answers.append(record)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))

    def traffic(self, hours: range, actions: list[Callable[[], None]]) -> None:
        """Every node gets the hours' requests, while ``actions`` (admin calls) run."""
        nodes = [*self.nodes, *([self.control] if self.control else [])]
        threads = [threading.Thread(target=self.send, args=(n, hours)) for n in nodes]
        for thread in threads:
            thread.start()
        for action in actions:
            action()
        for thread in threads:
            thread.join()

    # -- status: drift and live accuracy -------------------------------------------------------

    def status_rows(self) -> list[dict[str, Any]]:
        rows = []
        for node in self.nodes:
            reading = node.read()
            rows.append(node_status(node.name, "local", reading, reading).to_dict())
        return rows

    def check_drift(self, hour: int) -> bool:
        rows = self.status_rows()
        report = drift_check(rows, self.args.drift_factor, self.args.drift_min_hours)
        self.drift_checks.append({
            "hour": hour, "drifted": report.drifted, "lines": report.lines,
            "ratios": {r["node"]: (r["live_mae_7d"] / r["validation_mae"]
                                   if r["live_mae_7d"] and r["validation_mae"] else None)
                       for r in rows},
            "serving": {r["node"]: r["model_id"] for r in rows},
        })  # fmt: skip
        if report.drifted != self.drifting:
            self.drifting = report.drifted
            if report.drifted:
                self.event("drift", hour, lines=report.lines)
            else:
                self.event("drift cleared", hour, lines=report.lines)
        return report.drifted

    def checkpoint(self, hour: int) -> None:
        for node in [*self.nodes, *([self.control] if self.control else [])]:
            model = requests.get(node.url + "/v1/model", timeout=30).json()
            live = model["live_accuracy"]["models"]
            self.checkpoints.append({
                "node": node.name, "hour": hour, "serving": model["model_id"],
                "shadow": (model.get("shadow") or {}).get("model_id"),
                "validation_mae": ((model.get("manifest") or {}).get("metrics") or {})
                .get("sbn", {}).get("mae"),
                "models": {model_id: {name: figures[name] for name in LIVE_WINDOWS}
                           for model_id, figures in live.items()},
            })  # fmt: skip

    # -- the cycle -----------------------------------------------------------------------------

    def event(self, kind: str, hour: int, **details: Any) -> None:
        self.events.append({"kind": kind, "hour": hour, "time": f"{stamp(hour):%Y-%m-%d %H:%M}",
                            **details})  # fmt: skip

    def ship(self, node: Node, bundle: Path) -> Callable[[], None]:
        """What rollout-model.yml does for a local node: refuse a refused candidate, copy the
        bundle into the node's store, hot swap."""
        check_not_refused(json.loads((bundle / "manifest.json").read_text()))
        if not (node.store / bundle.name).exists():
            shutil.copytree(bundle, node.store / bundle.name)

        def swap() -> None:
            node.admin("/admin/v1/models", {"model_id": bundle.name})

        return swap

    def retrain(self, extra: list[str]) -> tuple[int, dict[str, Any]]:
        argv = ["retrain", "--building", self.building, "--store", str(self.store),
                "--data-dir", str(self.data), "--json", *extra]  # fmt: skip
        result = self.cli(*argv, check=False)
        if result.returncode not in (0, 3):
            return result.returncode, {"line": (result.stderr or result.stdout).strip()[-500:]}
        return result.returncode, json.loads(result.stdout)

    def cycle(self, number: int, day: int, hour: int, why: str) -> list[Callable[[], None]]:
        """One cycle at the end of replayed day ``day``; returns the admin calls that the next
        day's traffic carries."""
        began = time.monotonic()
        record: dict[str, Any] = {"cycle": number, "hour": hour, "trigger": why, "steps": []}
        self.cycles.append(record)
        canary = self.nodes[0]
        actions: list[Callable[[], None]] = []
        if number == self.args.worse_candidate_cycle:
            rc, decision = self.retrain(["--cold", "--epochs", "1", "--seed", "7"])
            refused = rc == 3 and not decision["promoted"]
            model_id = decision.get("model_id")
            serving = {n.name: requests.get(n.url + "/v1/model", timeout=30).json()["model_id"]
                       for n in self.nodes}  # fmt: skip
            record["steps"].append(
                {"step": "worse candidate", "rc": rc, **decision, "serving_after": serving}
            )
            self.event("worse candidate refused" if refused else "worse candidate NOT refused",
                       hour, model_id=model_id, line=decision["line"])  # fmt: skip
            if refused:
                self.worse_candidate = model_id
        if number == self.args.bad_canary_cycle:
            bad_store = self.work / "bad"
            self.cli(
                "train", "--building", self.building, "--data-dir", str(self.data),
                "--until", f"{stamp(hour + 1) - pd.Timedelta(days=14):%Y-%m-%d}",
                "--epochs", "1", "--seed", "7", "--out", str(bad_store), "--quiet",
            )  # fmt: skip
            (bundle,) = bad_store.iterdir()
            record["steps"].append({"step": "bad canary", "model_id": bundle.name})
            self.event("bad canary", hour, model_id=bundle.name)
            actions.append(self.ship(canary, bundle))
            self.pending = Pending(bundle.name, canary.serving, bundle,
                                   day + self.args.analysis_days, deliberate=True)  # fmt: skip
        elif why == "no drift":
            record["steps"].append({"step": "no retrain", "line": "no drift: nothing retrained"})
        else:
            rc, decision = self.retrain(self.args.retrain_args.split())
            record["steps"].append({"step": "retrain", "rc": rc, **decision})
            self.event("retrain", hour, rc=rc, line=decision["line"])
            if rc == 0:
                self.event("promoted", hour, model_id=decision["model_id"])
                bundle = Path(decision["bundle"])
                actions.append(self.ship(canary, bundle))
                self.pending = Pending(decision["model_id"], canary.serving, bundle,
                                       day + self.args.analysis_days)  # fmt: skip
            elif rc == 3:
                self.event("refused", hour, model_id=decision["model_id"])
        record["wall_s"] = round(time.monotonic() - began, 3)
        if actions:
            pending = self.pending
            assert pending is not None
            swap = actions[0]

            def swap_then_read() -> None:
                swap()
                pending.first = canary.read()

            actions = [swap_then_read]
        return actions

    def judge_canary(self, hour: int) -> list[Callable[[], None]]:
        pending, canary = self.pending, self.nodes[0]
        assert pending is not None and pending.first is not None
        self.pending = None
        row = node_status(canary.name, "local", pending.first, canary.read()).to_dict()
        verdict = judge(row, pending.candidate, pending.previous,
                        CanaryRules(min_hours=self.args.min_hours))  # fmt: skip
        details = {"model_id": pending.candidate, "reason": verdict.reason,
                   "new_mae": verdict.new_mae, "old_mae": verdict.old_mae,
                   "hours": verdict.hours, "deliberate": pending.deliberate}  # fmt: skip
        if verdict.passed:
            self.event("canary passed", hour, **details)
            actions = [self.ship(node, pending.bundle) for node in self.nodes[1:]]

            def fleet() -> None:
                for action in actions:
                    action()

            self.event("fleet", hour, model_id=pending.candidate)
            return [fleet]
        self.event("rollback", hour, **details)

        def rollback() -> None:
            canary.admin("/admin/v1/rollback", {})

        return [rollback]

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        began = time.monotonic()
        champion = self.set_up()
        setup_s = time.monotonic() - began
        self.event("start", epoch_hour(args.start), model_id=champion)
        self.event("step change", epoch_hour(args.step_day), factor=args.step_factor)
        days = int((args.end - args.start) / pd.Timedelta(days=1))
        first_hour = epoch_hour(args.start)
        if first_hour + days * 24 - 1 > self.readings.last_hour:
            raise SystemExit(f"{self.building}: the shipped data ends before {args.end:%Y-%m-%d}")
        actions: list[Callable[[], None]] = []
        last_cycle_day = -1
        cycles = 0
        replay_began = time.monotonic()
        for day in range(days):
            day_hour = first_hour + day * 24
            step = args.drift_check_hours
            drifted = False
            for chunk in range(day_hour, day_hour + 24, step):
                self.traffic(range(chunk, min(chunk + step, day_hour + 24)), actions)
                actions = []
                drifted = self.check_drift(chunk + step - 1)
            end_hour = day_hour + 23
            self.ingest(day_hour, end_hour)
            self.checkpoint(end_hour)
            if self.pending is not None:
                if day >= self.pending.judge_after_day:
                    actions = self.judge_canary(end_hour)
                continue
            since = day - last_cycle_day if last_cycle_day >= 0 else day + 1
            if since >= args.cycle_days:
                cycles += 1
                last_cycle_day = day
                why = "always" if args.trigger == "always" else "drift" if drifted else "no drift"
                actions = self.cycle(cycles, day, end_hour, why)
        replay_s = time.monotonic() - replay_began
        if actions:  # the last day's decision: carried out without more traffic
            for action in actions:
                action()
        return self.figures(days, setup_s, replay_s)

    # -- figures ---------------------------------------------------------------------------------

    def figures(self, days: int, setup_s: float, replay_s: float) -> dict[str, Any]:
        args = self.args
        kinds = [e["kind"] for e in self.events]
        failed = [a for a in self.answers if a.get("status") != 200]
        step_hour = epoch_hour(args.step_day)
        firing = [c for c in self.drift_checks if c["drifted"] and c["hour"] >= step_hour]
        before = [c for c in self.drift_checks if c["drifted"] and c["hour"] < step_hour]
        delay = firing[0]["hour"] + 1 - step_hour if firing else None
        checks_before = [c for c in self.drift_checks if c["hour"] < step_hour]
        last_end = epoch_hour(args.end) - 1
        step_in_replay = step_hour <= last_end
        walls = [c["wall_s"] for c in self.cycles]
        live_check = offline_check(self.answers, self.checkpoints, self.readings.actual)
        refused_dir = self.store / REFUSED_FOLDER
        worse = self.worse_candidate
        return {
            "building": self.building,
            "start": f"{args.start:%Y-%m-%d}",
            "end": f"{args.end:%Y-%m-%d}",
            "step_day": f"{args.step_day:%Y-%m-%d}",
            "step_factor": args.step_factor,
            "nodes": [n.name for n in self.nodes],
            "days_replayed": days,
            "requests": len(self.answers),
            "failed_requests": len(failed),
            "failed_examples": failed[:5],
            "requests_during_admin_calls": sum(1 for a in self.answers if a["shadow"] == "?"),
            "cycles": len(self.cycles),
            "retrains": kinds.count("retrain")
            + kinds.count("worse candidate refused")
            + kinds.count("worse candidate NOT refused"),
            "promotions": kinds.count("promoted"),
            "refusals": kinds.count("refused") + kinds.count("worse candidate refused"),
            "fleet_rollouts": kinds.count("fleet"),
            "canary_rollbacks": kinds.count("rollback"),
            "worse_candidate": {
                "model_id": worse,
                "refused": worse is not None,
                "in_refused_folder": worse is not None and (refused_dir / worse).is_dir(),
                "on_a_node": worse is not None
                and any((n.store / worse).exists() for n in self.nodes),
                "served": worse is not None
                and any(a.get("model_id") == worse for a in self.answers),
            },
            "drift": {
                "factor": args.drift_factor,
                "min_hours": args.drift_min_hours,
                "check_every_hours": args.drift_check_hours,
                "deadline_hours": args.drift_deadline_hours,
                "step_in_replay": step_in_replay,
                "detection_delay_hours": delay,
                "fired_before_step": len(before),
                "drifting_at_step": bool(checks_before and checks_before[-1]["drifted"]),
                "cleared_hour": recovery_hour(self.drift_checks, step_hour),
            },
            "recovery": self.recovery(step_hour, firing[0]["hour"] if firing else None),
            "live_mae_check": live_check,
            "cycle_wall_s": {
                "median": statistics.median(walls) if walls else None,
                "max": max(walls) if walls else None,
            },
            "setup_s": round(setup_s, 1),
            "replay_s": round(replay_s, 1),
            "final_models": {n.name: n.serving for n in self.nodes},
            "events": self.events,
            "cycle_records": self.cycles,
        }

    def level(self, point: dict[str, Any], model_id: str | None = None) -> dict[str, Any]:
        """A model's live 7-day MAE at a checkpoint, in kWh and as a fraction of the mean load
        of the hours it covers (the level moves with the step change, the fraction need not)."""
        figures = point["models"].get(model_id or point["serving"], {}).get("7d", {})
        mae, hours = figures.get("mae"), figures.get("hours") or 0
        if mae is None:
            return {"model_id": model_id or point["serving"], "mae": None, "relative": None}
        clock = point["hour"]
        mean = statistics.fmean(map(self.readings.actual, range(clock - hours + 1, clock + 1)))
        return {"model_id": model_id or point["serving"], "time": f"{stamp(clock):%Y-%m-%d}",
                "mae": mae, "hours": hours, "relative": mae / mean}  # fmt: skip

    def recovery(self, step_hour: int, drift_hour: int | None) -> dict[str, Any]:
        """The last fleet node's serving model before the step, at its worst after it, and at
        the end; beside it the control node's champion, never retrained."""
        fleet = self.nodes[-1].name
        points = [c for c in self.checkpoints if c["node"] == fleet]
        before = [p for p in points if p["hour"] < step_hour]
        after = [p for p in points if p["hour"] >= step_hour]
        if not before or not after or drift_hour is None:
            return {"judged": False}
        pre = self.level(before[-1])
        levels = [self.level(p) for p in after]
        worst = max((lv for lv in levels if lv["mae"] is not None), key=lambda lv: lv["mae"])
        promoted_after = {
            e["model_id"] for e in self.events if e["kind"] == "fleet" and e["hour"] >= drift_hour
        }
        bound = self.args.drift_factor * pre["relative"]
        recovered = next(
            (lv for p, lv in zip(after, levels, strict=True)
             if p["serving"] in promoted_after and lv["relative"] is not None
             and lv["relative"] <= bound),
            None,
        )  # fmt: skip
        control = None
        if self.control is not None:
            last = [c for c in self.checkpoints if c["node"] == "control"][-1]
            control = self.level(last)
        return {
            "judged": True,
            "before_step": pre,
            "worst_after_step": worst,
            "end": levels[-1],
            "end_model_retrained_after_drift": after[-1]["serving"] in promoted_after,
            "bound_relative": bound,
            "recovered": recovered,
            "control_end": control,
        }

    def stop(self) -> None:
        self.launcher.stop_all()


def recovery_hour(checks: list[dict[str, Any]], step_hour: int) -> int | None:
    """The first check after the step change's drift at which the rule no longer fires."""
    fired = False
    for check in checks:
        if check["hour"] < step_hour:
            continue
        if check["drifted"]:
            fired = True
        elif fired:
            return check["hour"]
    return None


def offline_mae(
    answers: list[dict[str, Any]],
    actual: Callable[[int], float],
    model_id: str,
    clock: int,
    hours: int,
) -> tuple[float | None, int, int]:
    """A model's MAE over the ``hours`` hours up to ``clock``, from the forecasts its answers
    carried: (MAE, pairs, hours scored)."""
    issued = {a["hour"]: a["forecast"] for a in answers if a.get("model_id") == model_id}
    total, pairs, scored = 0.0, 0, 0
    for hour in range(clock - hours + 1, clock + 1):
        errors = [
            issued[hour - lead][lead - 1] - actual(hour)
            for lead in range(1, HORIZON + 1)
            if hour - lead in issued and lead <= len(issued[hour - lead])
        ]
        if errors:
            total += sum(abs(e) for e in errors)
            pairs += len(errors)
            scored += 1
    return (total / pairs if pairs else None), pairs, scored


def offline_check(
    answers: list[dict[str, Any]],
    checkpoints: list[dict[str, Any]],
    actual: Callable[[int], float],
) -> dict[str, Any]:
    """Each node's serving model's live MAE (24 h, 7 d) at every day's end against the same
    forecasts scored here; left out where the model was also scored in shadow (forecasts the
    client never saw) in the hours that count."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        by_node.setdefault(answer["node"], []).append(answer)
    compared, skipped, worst = 0, 0, 0.0
    mismatches: list[str] = []
    for point in checkpoints:
        model_id, clock = point["serving"], point["hour"]
        mine = [a for a in by_node[point["node"]] if clock - 168 - HORIZON < a["hour"] <= clock]
        if any(a["shadow"] in (model_id, "?") for a in mine):
            skipped += 1
            continue
        for name, hours in LIVE_WINDOWS.items():
            live = point["models"].get(model_id, {}).get(name, {})
            mae, pairs, scored = offline_mae(mine, actual, model_id, clock, hours)
            if live.get("mae") is None and mae is None:
                continue
            if live.get("pairs") != pairs or live.get("hours") != scored or mae is None:
                mismatches.append(
                    f"{point['node']} {model_id} {name} at {clock}: live {live} "
                    f"against {pairs} pairs over {scored} hours here"
                )
                continue
            worst = max(worst, abs(live["mae"] - mae))
            compared += 1
    return {
        "compared": compared,
        "skipped": skipped,
        "max_abs_diff": worst,
        "mismatches": len(mismatches),
        "mismatch_examples": mismatches[:5],
    }


def plot(figures: dict[str, Any], checkpoints: list[dict[str, Any]], path: Path,
         drift_checks: list[dict[str, Any]]) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canary = figures["nodes"][0]
    points = [c for c in checkpoints if c["node"] == canary]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]}
    )
    series: dict[str, tuple[list[pd.Timestamp], list[float]]] = {}
    for point in points:
        for model_id, windows in point["models"].items():
            mae = windows["24h"]["mae"]
            if mae is not None and windows["24h"]["hours"] >= 12:
                xs, ys = series.setdefault(model_id, ([], []))
                xs.append(stamp(point["hour"]))
                ys.append(mae)
    colours = plt.get_cmap("tab10")
    for index, (xs, ys) in enumerate(series.values()):
        top.plot(xs, ys, lw=1.1, color=colours(index % 10), marker="." if len(xs) < 4 else None)
    serving = [(stamp(p["hour"]), p["models"].get(p["serving"], {}).get("7d", {}).get("mae"))
               for p in points]  # fmt: skip
    top.plot([x for x, y in serving if y is not None], [y for x, y in serving if y is not None],
             color="black", lw=2, label="serving model, 7-day live MAE")  # fmt: skip
    control = [(stamp(p["hour"]), p["models"].get(p["serving"], {}).get("7d", {}).get("mae"))
               for p in checkpoints if p["node"] == "control"]  # fmt: skip
    if control:
        top.plot([x for x, y in control if y is not None],
                 [y for x, y in control if y is not None], color="grey", lw=1.5, ls="--",
                 label="first champion never retrained (control node), 7-day")  # fmt: skip
    # Decisions that change what serves: lines across both panels; the others: ticks.
    lines = {
        "promoted": ("tab:green", "-", "promoted by champion/challenger"),
        "rollback": ("tab:red", "-", "canary rolled back"),
        "step change": ("black", "--", "step change of the readings"),
    }
    ticks = {
        "refused": (top, "tab:orange", "v", "refused by champion/challenger"),
        "worse candidate refused": (top, "tab:brown", "X", "deliberately worse candidate refused"),
        "drift": (bottom, "tab:purple", "^", "drift rule fired"),
    }
    seen: set[str] = set()
    for event in figures["events"]:
        moment = stamp(event["hour"])
        if event["kind"] in lines:
            colour, style, label = lines[event["kind"]]
            for axis in (top, bottom):
                shown = label if axis is top and label not in seen else None
                axis.axvline(moment, color=colour, ls=style, lw=0.9, label=shown)
            seen.add(label)
        elif event["kind"] in ticks:
            axis, colour, marker, label = ticks[event["kind"]]
            axis.plot([moment], [0], marker=marker, color=colour, ms=6, ls="none",
                      label=label if label not in seen else None, clip_on=False)  # fmt: skip
            seen.add(label)
    top.set_ylabel("live MAE kWh (24 h; a colour per model)", fontsize=9)
    top.set_title(
        f"{figures['building']}, {figures['start']} to {figures['end']}: {figures['days_replayed']}"
        f" days replayed, {figures['retrains']} retrains, {figures['promotions']} promoted, "
        f"{figures['refusals']} refused, {figures['canary_rollbacks']} canary rollbacks, "
        f"{figures['failed_requests']} failed requests",
        fontsize=9,
    )
    top.legend(fontsize=7, loc="upper left", ncol=2)
    ratios = [(stamp(c["hour"]), c["ratios"].get(canary)) for c in drift_checks]
    bottom.plot([x for x, y in ratios if y is not None], [y for x, y in ratios if y is not None],
                color="tab:blue", lw=1)  # fmt: skip
    bottom.axhline(figures["drift"]["factor"], color="tab:purple", ls=":", lw=1)
    bottom.set_ylabel("live 7d / held-out\n(drift above the line)", fontsize=8)
    bottom.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def recovery_line(recovery: dict[str, Any]) -> str:
    if not recovery.get("judged"):
        return "not judged (no step change caught in the replay)"

    def show(level: dict[str, Any] | None) -> str:
        if level is None or level.get("mae") is None:
            return "-"
        return f"{level['mae']:.2f} kWh ({level['relative']:.1%} of the load)"

    recovered = recovery["recovered"]
    control = recovery["control_end"]
    return (
        f"before the step {show(recovery['before_step'])}, worst after "
        f"{show(recovery['worst_after_step'])}, end {show(recovery['end'])}; recovered "
        + (f"on {recovered['time']}" if recovered else "NOT")
        + f" (within {recovery['bound_relative']:.1%}, a retrained model)"
        + (f"; the never-retrained champion at the end {show(control)}" if control else "")
    )


def table(figures: dict[str, Any]) -> list[str]:
    drift = figures["drift"]
    delay = drift["detection_delay_hours"]
    cleared = drift["cleared_hour"]
    check = figures["live_mae_check"]
    rows = [
        ("days replayed", f"{figures['days_replayed']} ({figures['start']} to {figures['end']}, "
                          f"{figures['building']}, {len(figures['nodes'])} nodes)"),
        ("requests", f"{figures['requests']} ({figures['requests_during_admin_calls']} during "
                     "hot swaps and rollbacks)"),
        ("failed requests", str(figures["failed_requests"])),
        ("cycles", str(figures["cycles"])),
        ("retrains", str(figures["retrains"])),
        ("promotions", f"{figures['promotions']} (to the whole fleet: "
                       f"{figures['fleet_rollouts']})"),
        ("refusals", f"{figures['refusals']} (the deliberately worse candidate: "
                     f"{'refused' if figures['worse_candidate']['refused'] else 'NOT refused'})"),
        ("canary rollbacks", str(figures["canary_rollbacks"])),
        ("step change", f"x{figures['step_factor']:g} from {figures['step_day']}"),
        ("drift detection delay", "not in the replay" if not drift["step_in_replay"]
         else "not detected" if delay is None else f"{delay} h (checked every "
         f"{drift['check_every_hours']} h; deadline {drift['deadline_hours']:g} h)"),
        ("drift rule cleared", "no" if cleared is None else f"{stamp(cleared):%Y-%m-%d %H:00}"),
        ("live MAE (7 d)", recovery_line(figures["recovery"])),
        ("drift fired before the step", f"{drift['fired_before_step']} checks"),
        ("live MAE vs offline", f"{check['compared']} figures, max |diff| "
                                f"{check['max_abs_diff']:.2e} kWh"),
        ("cycle wall time", f"median {figures['cycle_wall_s']['median']} s, max "
                            f"{figures['cycle_wall_s']['max']} s"),
        ("wall time", f"set-up {figures['setup_s']} s, replay {figures['replay_s']} s"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return [f"{name:<{width}}  {value}" for name, value in rows]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.png or args.out / "ct-replay.png"
    if args.replot:
        checkpoints = [json.loads(line) for line in (args.out / "checkpoints.jsonl").open()]
        drift_checks = json.loads((args.out / "drift-checks.json").read_text())
        plot(json.loads((args.out / "replay.json").read_text()), checkpoints, png, drift_checks)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="edgecast-ct-replay-"))
    replay = Replay(args, work)
    try:
        figures = replay.run()
    finally:
        replay.stop()
        with (args.out / "answers.jsonl").open("w") as out:
            out.writelines(json.dumps(a) + "\n" for a in replay.answers)
        with (args.out / "checkpoints.jsonl").open("w") as out:
            out.writelines(json.dumps(c) + "\n" for c in replay.checkpoints)
        (args.out / "drift-checks.json").write_text(json.dumps(replay.drift_checks))
    (args.out / "replay.json").write_text(json.dumps(figures, indent=1))
    plot(figures, replay.checkpoints, png, replay.drift_checks)
    for line in table(figures):
        print(line)
    for event in figures["events"]:
        print(
            f"{event['time']}  {event['kind']}: "
            + (event.get("line") or event.get("reason") or event.get("model_id") or "")
        )
    print(f"plot: {png}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if figures["failed_requests"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
