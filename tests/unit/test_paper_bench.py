"""The pure parts of bench/paper.py: statistics, the Markdown table, the switching latency from
recorded timestamps, the switch's time split into parts, and the results' JSON round trip."""

from __future__ import annotations

import importlib.util
import math
import sys
from types import ModuleType

import pytest

from edgecast_harness.paths import REPO


def load_paper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_bench", REPO / "bench" / "paper.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


paper = load_paper()


def answer(start: float, end: float, model_id: str | None = "old", status: int | None = 200):
    return paper.Request(start=start, end=end, status=status, model_id=model_id)


def test_stats_of_the_paper_loop_size():
    values = [float(v) for v in range(1, 63)]  # 62 requests, 1 s to 62 s
    stats = paper.Stats.of(values)
    assert stats.n == 62
    assert stats.avg == pytest.approx(31.5)
    assert stats.p50 == pytest.approx(31.5)
    # Linear between ranks: 0.99 * 61 = 60.39 -> between the 61st (61) and 62nd (62) values.
    assert stats.p99 == pytest.approx(61.39)
    assert stats.max == 62.0


def test_stats_of_nothing_are_nan():
    stats = paper.Stats.of([])
    assert stats.n == 0
    assert math.isnan(stats.avg) and math.isnan(stats.p99)


def test_seconds_in_tables():
    assert paper.seconds(0.01234) == "12.3 ms"
    assert paper.seconds(26.49) == "26.49 s"
    assert paper.seconds(float("nan")) == "-"


def test_markdown_table_aligns_numbers_right_and_escapes_pipes():
    table = paper.markdown_table(["path", "n", "avg"], [["a|b", 62, "7.72 s"], ["c", 3, "12.3 ms"]])
    assert table.splitlines() == [
        "| path | n | avg |",
        "|---|---:|---:|",
        "| a\\|b | 62 | 7.72 s |",
        "| c | 3 | 12.3 ms |",
    ]


def test_markdown_table_refuses_a_short_row():
    with pytest.raises(ValueError, match="3 cells"):
        paper.markdown_table(["a", "b", "c"], [[1, 2]])


def test_switching_latency_is_command_start_to_first_answer_by_the_new_model():
    started = 100.0
    loop = [
        answer(98.0, 98.01),
        answer(99.5, 99.51),  # before the command: not counted even from the new model
        answer(101.0, 101.02),
        answer(104.0, 104.5, status=None, model_id=None),  # failed
        answer(105.0, 105.03, model_id="new"),
        answer(106.0, 106.01, model_id="new"),
    ]
    assert paper.switching_latency(started, loop, "new") == pytest.approx(5.03)
    assert math.isnan(paper.switching_latency(started, loop, "other"))
    early = [answer(99.0, 99.2, model_id="new"), *loop]
    assert paper.switching_latency(started, early, "new") == pytest.approx(5.03)


def test_requests_in_flight_during_a_switch():
    loop = [answer(1, 2), answer(3, 4.5), answer(5, 6), answer(7, 8)]
    assert paper.overlapping(loop, 4.0, 5.5) == loop[1:3]


def test_a_switch_splits_into_parts_that_add_up_to_its_wall_time():
    pod = paper.Switch(
        "new",
        100.0,
        122.0,
        {"create": 0.03, "ready": 3.3, "verify_pod": 0.03, "switch": 0.02, "endpoints": 0.02,
         "verify_service": 0.03, "drain": 5.0, "cleanup": 8.4, "total": 16.9},
        [answer(101, 101.1), answer(108, 108.1, model_id="new")],
        [paper.Task("Ask the cluster", 102.0, 102.5),
         paper.Task("Move the bundle", 102.6, 104.0),
         paper.Task("Switch", 104.1, 121.2, switch=True),
         paper.Task("Report the switch", 121.3, 121.4)],
    )  # fmt: skip
    parts = paper.phase_parts(pod, "cluster")
    assert parts[paper.STARTUP] == pytest.approx(2.0)
    assert parts["Ask the cluster"] == pytest.approx(0.5)
    assert parts["Move the bundle"] == pytest.approx(1.4)
    assert parts[paper.BETWEEN] == pytest.approx(0.2)
    assert parts["switch: ready"] == 3.3
    assert "switch: total" not in parts
    assert parts[paper.SWITCH_STARTUP] == pytest.approx(17.1 - 16.83)
    assert parts[paper.AFTER] == pytest.approx(0.8)
    assert sum(parts.values()) == pytest.approx(pod.wall)
    assert pod.to_new_model == pytest.approx(8.1)


def test_without_task_times_the_playbook_before_the_phases_is_one_part():
    swap = paper.Switch("new", 0.0, 4.0, {"swap": 0.6, "verify": 0.1, "total": 0.7}, [])
    parts = paper.phase_parts(swap, "local")
    assert list(parts)[1:] == ["switch: swap", "switch: verify"]
    assert sum(parts.values()) == pytest.approx(4.0)


def test_short_tasks_are_summed_in_the_medians():
    def switch(move: float) -> object:
        tasks = [paper.Task("tiny", 1.0, 1.1), paper.Task("Move", 1.2, 1.2 + move),
                 paper.Task("Switch", 3.0, 4.0, switch=True)]  # fmt: skip
        return paper.Switch("new", 0.0, 5.0, {"swap": 0.5, "total": 0.5}, [], tasks)

    result = paper.PathResult("local", "keras", [], [switch(1.0), switch(1.4), switch(1.2)])
    medians = paper.median_parts(result)
    assert "tiny" not in medians
    assert medians[paper.OTHER_TASKS] == pytest.approx((0.1, 0.1, 0.1))
    assert medians["Move"] == pytest.approx((1.2, 1.0, 1.4))
    assert list(medians).index(paper.OTHER_TASKS) < list(medians).index(paper.BETWEEN)


def test_results_survive_the_json_file(tmp_path):
    switch = paper.Switch("new", 10.0, 14.0, {"swap": 0.5, "total": 0.6}, [answer(9, 9.1)])
    result = paper.PathResult("local", "keras", [answer(1, 1.01)], [switch], "1.0", "2.0")
    results = {"date": "d", "command": "c", "machine": {"cpu": "x"}, "paths": {"local": result}}
    again = paper.from_json(paper.to_json(results))
    assert again["paths"]["local"] == result
    paper.write_page(again, tmp_path / "benchmarks.md")
    page = (tmp_path / "benchmarks.md").read_text()
    assert "| paper: Jetson Nano | model switching |  | 26.49 s | 29.17 s |  |" in page
    assert "Not run this time: k8s pod, pod switch." in page
