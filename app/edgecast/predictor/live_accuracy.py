"""Live forecast accuracy, scored from the request stream itself.

Every prediction request carries the last ``window`` hours of real load, so it holds the actual
values of hours this predictor forecast earlier. The scorer remembers the forecasts it issued,
per series (a building, named by the request's ``series`` field) and per model, and scores each
(forecast, actual) pair once the actual arrives: MAE, MAPE and bias over the last 24 hours and
7 days, per model.

Hours are UTC epoch hours of the requests' own timestamps, and each series has its own clock:
its newest ``last_timestamp``. Memory is bounded whatever clients send: at most ``max_series``
series (the least recently used is dropped), per series only the hours that a later request can
still change (the last ``min(window, 168)`` hours, and the forecasts that target them: issued
within ``horizon`` hours before), and per model 168 rows of per-hour error sums.

A pair is kept per (series, model, issue hour, lead): a request repeated for the same hour
replaces its forecast rather than counting twice. When a later request carries a different
actual for an hour already scored (a client correcting its data), the hour is scored again with
the latest actual, replacing its contribution, and the correction is counted. Hours that no
later request can change any more (older than ``min(window, 168)`` hours behind the series'
clock) are final. A request whose hours are all final (the client's clock jumped back) restarts
its series; one far ahead moves the series' clock, and older hours age out.

Per-hour sums are kept per model on the same rows (row = hour mod 168), so that two models
scored on the same requests can be compared over exactly the same hours (``compare``).
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_SERIES = "default"
SERIES_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEPT_HOURS = 168  # 7 days of per-hour sums
WINDOWS = {"24h": 24, "7d": KEPT_HOURS}
DEFAULT_MAX_SERIES = 256
_NO_HOUR = np.iinfo(np.int64).min
# Columns of a model's per-hour sums.
_ABS, _ERR, _APE, _PAIRS, _APE_PAIRS = range(5)


@dataclass(frozen=True)
class Figures:
    """Accuracy over a set of scored hours; None where no pair (for MAPE: no non-zero actual)."""

    mae: float | None
    mape: float | None  # percent
    bias: float | None  # mean(forecast - actual)
    pairs: int
    hours: int

    @classmethod
    def from_sums(cls, sums: np.ndarray, hours: int) -> Figures:
        pairs, ape_pairs = int(sums[_PAIRS]), int(sums[_APE_PAIRS])
        return cls(
            mae=float(sums[_ABS] / pairs) if pairs else None,
            mape=float(sums[_APE] / ape_pairs * 100) if ape_pairs else None,
            bias=float(sums[_ERR] / pairs) if pairs else None,
            pairs=pairs,
            hours=hours,
        )

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "mae": self.mae,
            "mape": self.mape,
            "bias": self.bias,
            "pairs": self.pairs,
            "hours": self.hours,
        }


@dataclass(frozen=True)
class ModelAccuracy:
    windows: dict[str, Figures]  # by WINDOWS name
    pairs_scored: int  # since the start (a re-scored pair counts once)
    corrections: int  # hours of this model re-scored because their actual changed

    def to_dict(self) -> dict[str, object]:
        return {
            **{name: figures.to_dict() for name, figures in self.windows.items()},
            "pairs_scored": self.pairs_scored,
            "corrections": self.corrections,
        }


@dataclass(frozen=True)
class LiveSnapshot:
    models: dict[str, ModelAccuracy]
    series: int
    series_limit: int
    series_restarted: int
    series_evicted: int
    forecasts_kept: int  # requests' forecasts remembered, over all series and models

    def to_dict(self, serving_model_id: str | None = None) -> dict[str, object]:
        """``/v1/model``'s view; the serving model is always listed (with no pairs yet, maybe)."""
        models = dict(self.models)
        if serving_model_id is not None and serving_model_id not in models:
            models[serving_model_id] = _empty_accuracy(0, 0)
        return {
            "models": {model_id: accuracy.to_dict() for model_id, accuracy in models.items()},
            "series": {
                "tracked": self.series,
                "limit": self.series_limit,
                "restarted": self.series_restarted,
                "evicted": self.series_evicted,
            },
            "forecasts_kept": self.forecasts_kept,
        }


def _empty_accuracy(pairs_scored: int, corrections: int) -> ModelAccuracy:
    empty = Figures.from_sums(np.zeros(5), 0)
    return ModelAccuracy(dict.fromkeys(WINDOWS, empty), pairs_scored, corrections)


class _ModelHours:
    """One model's forecasts and per-hour error sums in one series."""

    def __init__(self) -> None:
        self.issued: OrderedDict[int, array[float]] = OrderedDict()  # issue hour -> forecast
        self.hours = np.full(KEPT_HOURS, _NO_HOUR, dtype=np.int64)  # the hour each row holds
        self.sums = np.zeros((KEPT_HOURS, 5))
        self.latest_scored = _NO_HOUR

    def rows_since(self, first_hour: int) -> np.ndarray:
        return self.hours >= first_hour


class _Series:
    def __init__(self, newest: int, span: int, horizon: int) -> None:
        self.newest = newest  # the series' clock: its newest last hour
        # Hours behind the clock that a request can still change; fixed, since the forecasts
        # that hours beyond it would need may be gone.
        self.span = span
        self.horizon = horizon  # the longest of its models' horizons
        self.actuals = np.full(span, np.nan)  # of the open hours, oldest first; NaN: none yet
        self.models: dict[str, _ModelHours] = {}

    @property
    def first_open_hour(self) -> int:
        """Hours before this one are final."""
        return self.newest - self.span + 1

    def advance(self, newest: int) -> None:
        """Moves the clock on and forgets what can no longer be scored."""
        step = newest - self.newest
        self.newest = newest
        if step < self.span:
            self.actuals[:-step] = self.actuals[step:]
            self.actuals[-step:] = np.nan
        else:
            self.actuals[:] = np.nan
        oldest_issue = self.first_open_hour - self.horizon
        for model_id, model in list(self.models.items()):
            while model.issued and next(iter(model.issued)) < oldest_issue:
                model.issued.popitem(last=False)
            if not model.issued and model.latest_scored <= newest - KEPT_HOURS:
                del self.models[model_id]

    def actual(self, hour: int) -> float:
        """The actual of an open hour; NaN when none arrived yet."""
        return float(self.actuals[hour - self.first_open_hour])


class LiveAccuracy:
    """Scores the forecasts a predictor issued against the actuals later requests carry.

    Thread-safe: ``observe`` and the readers take one lock, for the update only.
    """

    def __init__(self, max_series: int = DEFAULT_MAX_SERIES) -> None:
        if max_series < 1:
            raise ValueError("max_series must be positive")
        self.max_series = max_series
        self._lock = threading.Lock()
        self._series: OrderedDict[str, _Series] = OrderedDict()  # least recently used first
        self._pairs_scored: dict[str, int] = {}
        self._corrections: dict[str, int] = {}
        self._restarted = 0
        self._evicted = 0

    def observe(
        self,
        series: str,
        model_id: str,
        last_hour: int,
        actuals: np.ndarray,
        forecast: Sequence[float],
    ) -> None:
        """One request: ``actuals`` are the loads of the hours up to ``last_hour`` (NaN where
        missing), ``forecast`` what ``model_id`` answered for the hours after it."""
        window, horizon = len(actuals), len(forecast)
        if window == 0 or horizon == 0:
            return
        issued = array("d", forecast)
        with self._lock:
            state = self._series_for(series, last_hour, window, horizon)
            state.horizon = max(state.horizon, horizon)
            if last_hour > state.newest:
                state.advance(last_hour)
            self._take_actuals(state, last_hour, actuals)
            model = state.models.get(model_id)
            if model is None:
                model = state.models[model_id] = _ModelHours()
            model.issued[last_hour] = issued
            # A request answered after later ones (a retry, another client thread) forecast
            # hours whose actuals are known already: scored now.
            first = max(last_hour + 1, state.first_open_hour)
            for hour in range(first, min(last_hour + horizon, state.newest) + 1):
                actual = state.actual(hour)
                if not math.isnan(actual):
                    self._score(state, model_id, model, hour, actual)

    def _series_for(self, series: str, last_hour: int, window: int, horizon: int) -> _Series:
        state = self._series.get(series)
        if state is not None and last_hour + horizon < state.first_open_hour:
            state = None  # every hour of this request is final: the client's clock jumped back
            self._restarted += 1
        if state is None:
            state = self._series[series] = _Series(last_hour, min(window, KEPT_HOURS), horizon)
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)
                self._evicted += 1
        self._series.move_to_end(series)
        return state

    def _take_actuals(self, state: _Series, last_hour: int, actuals: np.ndarray) -> None:
        """Stores the open hours' actuals and scores the hours whose actual is new or changed."""
        first = max(last_hour - len(actuals) + 1, state.first_open_hour)
        if first > last_hour:
            return
        offset = first - state.first_open_hour
        stored = state.actuals[offset : offset + last_hour - first + 1]  # a view: written through
        values = actuals[len(actuals) - len(stored) :]
        if not state.models:  # nothing to score yet
            np.copyto(stored, values, where=~np.isnan(values))
            return
        # NaN differs from everything, itself included: missing values are sorted out below.
        for index in np.flatnonzero(values != stored).tolist():
            actual, before = float(values[index]), float(stored[index])
            if math.isnan(actual):  # missing: the hour keeps what it has
                continue
            stored[index] = actual
            for model_id, model in state.models.items():
                rescored = self._score(state, model_id, model, first + index, actual)
                if rescored and not math.isnan(before):
                    self._corrections[model_id] = self._corrections.get(model_id, 0) + 1

    def _score(
        self, state: _Series, model_id: str, model: _ModelHours, hour: int, actual: float
    ) -> bool:
        """(Re)computes ``hour``'s error sums from every forecast of it; True when the hour
        had been scored before."""
        abs_sum = err_sum = 0.0
        pairs = 0
        issued = model.issued.get
        for lead in range(1, state.horizon + 1):
            forecast = issued(hour - lead)
            if forecast is not None and lead <= len(forecast):
                error = forecast[lead - 1] - actual
                abs_sum += abs(error)
                err_sum += error
                pairs += 1
        row = hour % KEPT_HOURS
        scored_before = int(model.sums[row, _PAIRS]) if model.hours[row] == hour else 0
        if pairs == 0 and scored_before == 0:
            return False
        model.hours[row] = hour
        model.sums[row] = (
            abs_sum,
            err_sum,
            abs_sum / abs(actual) if actual else 0.0,
            pairs,
            pairs if actual else 0,
        )
        model.latest_scored = max(model.latest_scored, hour)
        added = pairs - scored_before  # never negative: an open hour keeps its forecasts
        self._pairs_scored[model_id] = self._pairs_scored.get(model_id, 0) + added
        return scored_before > 0

    def snapshot(self) -> LiveSnapshot:
        """Every model's figures over the last 24 hours and 7 days of each series' clock."""
        with self._lock:
            totals = {
                name: {model_id: np.zeros(5) for model_id in self._model_ids()} for name in WINDOWS
            }
            hours = {name: dict.fromkeys(totals[name], 0) for name in WINDOWS}
            kept = 0
            for state in self._series.values():
                for model_id, model in state.models.items():
                    kept += len(model.issued)
                    for name, length in WINDOWS.items():
                        rows = model.rows_since(state.newest - length + 1)
                        rows &= model.sums[:, _PAIRS] > 0
                        totals[name][model_id] += model.sums[rows].sum(axis=0)
                        hours[name][model_id] += int(rows.sum())
            models = {
                model_id: ModelAccuracy(
                    {
                        name: Figures.from_sums(totals[name][model_id], hours[name][model_id])
                        for name in WINDOWS
                    },
                    self._pairs_scored.get(model_id, 0),
                    self._corrections.get(model_id, 0),
                )
                for model_id in totals["7d"]
            }
            # Counters of models no series remembers any more go with them.
            for counts in (self._pairs_scored, self._corrections):
                for model_id in set(counts) - set(models):
                    del counts[model_id]
            return LiveSnapshot(
                models, len(self._series), self.max_series, self._restarted, self._evicted, kept
            )

    def _model_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for state in self._series.values():
            seen.update(dict.fromkeys(state.models))
        return list(seen)

    def compare(self, model_a: str, model_b: str, since_hour: int) -> tuple[Figures, Figures]:
        """Both models' figures over exactly the same (series, hour)s: those from ``since_hour``
        on, within each series' last 7 days, that both models have scored pairs for."""
        sums = {model_a: np.zeros(5), model_b: np.zeros(5)}
        hours = 0
        with self._lock:
            for state in self._series.values():
                a, b = state.models.get(model_a), state.models.get(model_b)
                if a is None or b is None:
                    continue
                rows = a.rows_since(max(since_hour, state.newest - KEPT_HOURS + 1))
                rows &= (a.hours == b.hours) & (a.sums[:, _PAIRS] > 0) & (b.sums[:, _PAIRS] > 0)
                sums[model_a] += a.sums[rows].sum(axis=0)
                sums[model_b] += b.sums[rows].sum(axis=0)
                hours += int(rows.sum())
        return Figures.from_sums(sums[model_a], hours), Figures.from_sums(sums[model_b], hours)
