"""The live accuracy scorer on its own: short windows and horizons whose every pair is listed
here by hand, and the bounds that hold whatever clients send."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from edgecast.predictor.live_accuracy import KEPT_HOURS, Figures, LiveAccuracy

WINDOW, HORIZON = 6, 3
T0 = 420_000  # an epoch hour in 2017


def loads(last: int, actual: dict[int, float], window: int = WINDOW) -> np.ndarray:
    """The window ending at ``last``: ``actual`` where given, NaN (missing) elsewhere."""
    return np.array([actual.get(hour, math.nan) for hour in range(last - window + 1, last + 1)])


def forecast_of(model: str, issue: int, horizon: int = HORIZON) -> list[float]:
    """A distinct forecast for every (model, issue hour, lead), so that a wrong pair shows."""
    offset = 0.5 if model == "a" else -0.25
    return [10.0 + (issue - T0) * 0.1 + lead * 0.01 + offset for lead in range(1, horizon + 1)]


def expected(pairs: list[tuple[float, float]]) -> dict[str, float | None]:
    errors = [f - a for f, a in pairs]
    relative = [abs(f - a) / a for f, a in pairs if a != 0]
    return {
        "mae": sum(map(abs, errors)) / len(errors) if errors else None,
        "mape": 100 * sum(relative) / len(relative) if relative else None,
        "bias": sum(errors) / len(errors) if errors else None,
    }


def assert_figures(figures: Figures, pairs: list[tuple[float, float]], hours: int) -> None:
    want = expected(pairs)
    for name in ("mae", "mape", "bias"):
        got = getattr(figures, name)
        assert (got is None) == (want[name] is None), (name, got, want[name])
        if got is not None:
            assert got == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
    assert (figures.pairs, figures.hours) == (len(pairs), hours)


def window_figures(scorer: LiveAccuracy, model: str, window: str = "7d") -> Figures:
    return scorer.snapshot().models[model].windows[window]


ACTUAL = {T0 - 10 + i: 20.0 + 3 * math.sin(i) for i in range(40)}


def replay(
    scorer: LiveAccuracy, model: str, issues: range, series: str = "s", actual: dict | None = None
) -> None:
    for issue in issues:
        scorer.observe(
            series, model, issue, loads(issue, actual or ACTUAL), forecast_of(model, issue)
        )


def pairs_of(model: str, issues: range, hours: range, actual: dict | None = None) -> list:
    """Every (forecast, actual) pair of ``model``'s forecasts issued at ``issues`` for ``hours``."""
    actual = actual or ACTUAL
    return [
        (forecast_of(model, issue)[hour - issue - 1], actual[hour])
        for issue in issues
        for hour in hours
        if 1 <= hour - issue <= HORIZON
    ]


def test_every_lead_time_is_a_pair_scored_when_its_actual_arrives() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 4))
    # Hour T0+1 forecast at lead 1; T0+2 at leads 1 and 2; T0+3 at leads 1, 2 and 3.
    pairs = pairs_of("a", range(T0, T0 + 4), range(T0 + 1, T0 + 4))
    assert len(pairs) == 6
    assert_figures(window_figures(scorer, "a"), pairs, hours=3)
    assert scorer.snapshot().models["a"].pairs_scored == 6


def test_the_24_hour_window_holds_the_last_24_hours_of_the_series_clock() -> None:
    scorer = LiveAccuracy()
    actual = {T0 - 10 + i: 5.0 + (i % 7) for i in range(80)}
    replay(scorer, "a", range(T0, T0 + 60), actual=actual)
    last = T0 + 59
    assert_figures(
        window_figures(scorer, "a", "24h"),
        pairs_of("a", range(T0, T0 + 60), range(last - 23, last + 1), actual),
        hours=24,
    )
    assert_figures(
        window_figures(scorer, "a", "7d"),
        pairs_of("a", range(T0, T0 + 60), range(T0 + 1, last + 1), actual),
        hours=59,
    )


def test_a_corrected_actual_replaces_its_hours_contribution_and_is_counted() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 4))
    corrected = {**ACTUAL, T0 + 2: ACTUAL[T0 + 2] + 7.5}
    scorer.observe("s", "a", T0 + 4, loads(T0 + 4, corrected), forecast_of("a", T0 + 4))
    pairs = pairs_of("a", range(T0, T0 + 5), range(T0 + 1, T0 + 5), corrected)
    assert_figures(window_figures(scorer, "a"), pairs, hours=4)
    accuracy = scorer.snapshot().models["a"]
    assert accuracy.corrections == 1
    assert accuracy.pairs_scored == len(pairs)  # the re-scored pairs count once
    # The same corrected value again is no new correction; the old one back is.
    scorer.observe("s", "a", T0 + 4, loads(T0 + 4, corrected), forecast_of("a", T0 + 4))
    assert scorer.snapshot().models["a"].corrections == 1
    scorer.observe("s", "a", T0 + 4, loads(T0 + 4, ACTUAL), forecast_of("a", T0 + 4))
    assert scorer.snapshot().models["a"].corrections == 2
    assert_figures(
        window_figures(scorer, "a"), pairs_of("a", range(T0, T0 + 5), range(T0 + 1, T0 + 5)), 4
    )


def test_a_repeated_request_replaces_its_forecast_instead_of_counting_twice() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 3))
    replay(scorer, "a", range(T0 + 2, T0 + 3))
    replay(scorer, "a", range(T0 + 3, T0 + 4))
    assert_figures(
        window_figures(scorer, "a"), pairs_of("a", range(T0, T0 + 4), range(T0 + 1, T0 + 4)), 3
    )


def test_missing_actuals_are_not_scored_until_they_arrive() -> None:
    scorer = LiveAccuracy()
    gappy = {hour: value for hour, value in ACTUAL.items() if hour != T0 + 2}
    replay(scorer, "a", range(T0, T0 + 4), actual=gappy)
    assert_figures(
        window_figures(scorer, "a"), pairs_of("a", range(T0, T0 + 4), (T0 + 1, T0 + 3)), 2
    )
    # Arriving late, the actual is scored (a first value, no correction) ...
    replay(scorer, "a", range(T0 + 4, T0 + 5))
    pairs = pairs_of("a", range(T0, T0 + 5), range(T0 + 1, T0 + 5))
    assert_figures(window_figures(scorer, "a"), pairs, 4)
    assert scorer.snapshot().models["a"].corrections == 0
    # ... and missing again later, the known value stays.
    replay(scorer, "a", range(T0 + 4, T0 + 5), actual=gappy)
    assert_figures(window_figures(scorer, "a"), pairs, 4)


def test_mape_leaves_out_actuals_of_zero_and_mae_keeps_them() -> None:
    scorer = LiveAccuracy()
    zero = {**ACTUAL, T0 + 2: 0.0}
    replay(scorer, "a", range(T0, T0 + 4), actual=zero)
    pairs = pairs_of("a", range(T0, T0 + 4), range(T0 + 1, T0 + 4), zero)
    figures = window_figures(scorer, "a")
    assert_figures(figures, pairs, 3)
    assert figures.mape == pytest.approx(expected([p for p in pairs if p[1] != 0])["mape"])
    only_zero = LiveAccuracy()
    replay(only_zero, "a", range(T0, T0 + 2), actual={h: 0.0 for h in ACTUAL})
    assert window_figures(only_zero, "a").mape is None
    assert window_figures(only_zero, "a").mae is not None


def test_two_models_are_scored_apart_on_the_same_hours_and_compared_on_common_ones() -> None:
    """A hot swap from a to b at T0+3: a's forecasts stay a's, and both score hours T0+4..5."""
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 3))
    replay(scorer, "b", range(T0 + 3, T0 + 7))
    snapshot = scorer.snapshot()
    hours = range(T0 + 1, T0 + 7)
    assert_figures(snapshot.models["a"].windows["7d"], pairs_of("a", range(T0, T0 + 3), hours), 5)
    assert_figures(
        snapshot.models["b"].windows["7d"], pairs_of("b", range(T0 + 3, T0 + 7), hours), 3
    )
    common = range(T0 + 4, T0 + 6)  # a's forecasts reach T0+5, b's start at T0+4
    a, b = scorer.compare("a", "b", since_hour=0)
    assert_figures(a, pairs_of("a", range(T0, T0 + 3), common), 2)
    assert_figures(b, pairs_of("b", range(T0 + 3, T0 + 7), common), 2)
    a, b = scorer.compare("a", "b", since_hour=T0 + 5)
    assert (a.hours, b.hours) == (1, 1)
    assert_figures(b, pairs_of("b", range(T0 + 3, T0 + 7), (T0 + 5,)), 1)


def test_series_are_scored_apart() -> None:
    scorer = LiveAccuracy()
    other = {hour: value * 2 for hour, value in ACTUAL.items()}
    for issue in range(T0, T0 + 4):  # interleaved, as two buildings' clients would send
        replay(scorer, "a", range(issue, issue + 1), series="b13")
        replay(scorer, "a", range(issue, issue + 1), series="b4", actual=other)
    hours = range(T0 + 1, T0 + 4)
    pairs = pairs_of("a", range(T0, T0 + 4), hours) + pairs_of("a", range(T0, T0 + 4), hours, other)
    assert_figures(window_figures(scorer, "a"), pairs, hours=6)
    snapshot = scorer.snapshot()
    assert snapshot.models["a"].corrections == 0
    assert snapshot.series == 2


def test_a_late_request_is_scored_against_the_actuals_known_already() -> None:
    """Answered after later requests (another client thread, a retry): its forecasts of hours
    whose actuals are known are scored at once."""
    scorer = LiveAccuracy()
    replay(scorer, "a", (T0, T0 + 2, T0 + 3))
    replay(scorer, "a", (T0 + 1,))
    assert_figures(
        window_figures(scorer, "a"), pairs_of("a", range(T0, T0 + 4), range(T0 + 1, T0 + 4)), 3
    )


def test_the_least_recently_used_series_is_evicted_beyond_the_limit() -> None:
    scorer = LiveAccuracy(max_series=2)
    replay(scorer, "a", range(T0, T0 + 3), series="one")
    replay(scorer, "a", range(T0, T0 + 3), series="two")
    replay(scorer, "a", range(T0 + 3, T0 + 4), series="one")  # "two" is now the least recent
    replay(scorer, "a", range(T0, T0 + 3), series="three")
    snapshot = scorer.snapshot()
    assert (snapshot.series, snapshot.series_evicted) == (2, 1)
    one = pairs_of("a", range(T0, T0 + 4), range(T0 + 1, T0 + 4))
    three = pairs_of("a", range(T0, T0 + 3), range(T0 + 1, T0 + 3))
    assert_figures(snapshot.models["a"].windows["7d"], one + three, hours=5)
    with pytest.raises(ValueError, match="positive"):
        LiveAccuracy(max_series=0)


def test_memory_stays_bounded_over_a_long_stream() -> None:
    """Forecasts are kept only while an hour they forecast can still change (the window, at
    most 7 days), per-hour sums for 7 days."""
    scorer = LiveAccuracy()
    window, horizon = 600, 24
    rng = np.random.default_rng(0)
    actual = rng.uniform(10, 30, size=2000 + window)
    for step in range(2000):
        last = T0 + step
        scorer.observe("s", "a", last, actual[step : step + window], [20.0] * horizon)
    snapshot = scorer.snapshot()
    assert snapshot.forecasts_kept <= KEPT_HOURS + horizon
    assert snapshot.models["a"].windows["7d"].hours == KEPT_HOURS
    assert snapshot.models["a"].windows["24h"].hours == 24
    assert snapshot.models["a"].windows["7d"].pairs == KEPT_HOURS * horizon


def test_a_clock_jumping_back_restarts_its_series() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0 + 20, T0 + 24))
    before = window_figures(scorer, "a")
    assert before.pairs == 6
    # Within the open hours, an older request is an ordinary late one ...
    replay(scorer, "a", (T0 + 19,))
    assert scorer.snapshot().series_restarted == 0
    # ... but one whose every hour is final starts the series again.
    replay(scorer, "a", (T0,))
    snapshot = scorer.snapshot()
    assert snapshot.series_restarted == 1
    assert snapshot.forecasts_kept == 1
    assert snapshot.models["a"].windows["7d"].pairs == 0
    replay(scorer, "a", range(T0 + 1, T0 + 3))
    assert_figures(
        window_figures(scorer, "a"), pairs_of("a", range(T0, T0 + 3), range(T0 + 1, T0 + 3)), 2
    )


def test_a_far_future_request_ages_the_series_out_and_the_real_clock_restarts_it() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 4))
    future = T0 + 10 * 365 * 24
    scorer.observe("s", "a", future, np.full(WINDOW, 20.0), [1.0] * HORIZON)
    snapshot = scorer.snapshot()
    assert snapshot.models["a"].windows["7d"].pairs == 0  # older than 7 days of its clock
    assert snapshot.forecasts_kept == 1
    replay(scorer, "a", range(T0 + 4, T0 + 6))
    snapshot = scorer.snapshot()
    assert snapshot.series_restarted == 1
    assert_figures(snapshot.models["a"].windows["7d"], pairs_of("a", (T0 + 4,), (T0 + 5,)), 1)


def test_hours_older_than_seven_days_leave_the_figures_and_idle_models_are_forgotten() -> None:
    scorer = LiveAccuracy()
    actual = {T0 - 10 + i: 20.0 for i in range(KEPT_HOURS + 40)}
    replay(scorer, "a", range(T0, T0 + 4), actual=actual)
    replay(scorer, "b", range(T0 + 4, T0 + 5), actual=actual)
    assert window_figures(scorer, "a").hours == 4  # T0+1..T0+4
    late = T0 + KEPT_HOURS + 2  # a's hours T0+1 and T0+2 are now older than 7 days
    scorer.observe("s", "b", late, loads(late, actual), forecast_of("b", late))
    assert window_figures(scorer, "a").hours == 2
    assert window_figures(scorer, "a", "24h").pairs == 0
    late = T0 + KEPT_HOURS + 10
    scorer.observe("s", "b", late, loads(late, actual), forecast_of("b", late))
    assert set(scorer.snapshot().models) == {"b"}


def test_a_longer_horizon_after_a_swap_scores_every_lead() -> None:
    scorer = LiveAccuracy()
    replay(scorer, "a", range(T0, T0 + 2))
    scorer.observe("s", "b", T0 + 2, loads(T0 + 2, ACTUAL), forecast_of("b", T0 + 2, horizon=5))
    scorer.observe("s", "b", T0 + 7, loads(T0 + 7, ACTUAL), forecast_of("b", T0 + 7, horizon=5))
    b = [
        (forecast_of("b", T0 + 2, 5)[hour - T0 - 3], ACTUAL[hour]) for hour in range(T0 + 3, T0 + 8)
    ]
    assert_figures(window_figures(scorer, "b"), b, hours=5)


def test_threads_observing_and_reading_at_once_lose_no_pair() -> None:
    """As waitress's threads do: each thread its own series, a reader scraping all along."""
    scorer = LiveAccuracy()
    issues = range(T0, T0 + 30)
    errors: list[BaseException] = []

    def client(series: str) -> None:
        try:
            replay(scorer, "a", issues, series=series)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        scorer.snapshot()
    for thread in threads:
        thread.join()
    assert not errors
    pairs = pairs_of("a", issues, range(T0 + 1, T0 + 30)) * 4
    assert_figures(window_figures(scorer, "a"), pairs, hours=29 * 4)
