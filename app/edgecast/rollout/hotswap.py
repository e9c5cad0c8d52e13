"""Hot swap: switch a running predictor to another model of its store through the admin API.

The predictor loads the new bundle beside the serving one, runs the parity gate, and only then
swaps (requests in flight finish on the model they started with), so the switch loses nothing.
The token travels in the Authorization header only and is never part of a message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


class HotSwapError(RuntimeError):
    """The predictor refused or did not confirm the switch; the message says why."""


@dataclass(frozen=True)
class SwapPlan:
    """What serving ``wanted`` would change, as the predictor answered ``GET /v1/model``."""

    serving: str  # the model served now
    served_before: str | None  # the model served before it: the rollback target
    wanted: str | None  # the model asked for; None for the one served before

    @property
    def changed(self) -> bool:
        return self.wanted is None or self.wanted != self.serving


@dataclass(frozen=True)
class HotSwapResult:
    changed: bool
    model_id: str
    previous_model_id: str | None
    phases: dict[str, float] = field(default_factory=dict)


def _call(
    url: str, *, method: str = "GET", token: str | None = None, body: object = None, timeout: float
) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"{}")
        except ValueError:
            payload = {"error": exc.reason}
        return exc.code, payload if isinstance(payload, dict) else {"error": str(payload)}
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HotSwapError(f"cannot reach the predictor at {url}: {reason}") from exc


def serving_model(base_url: str, timeout: float = 10.0) -> dict[str, object]:
    """What the predictor serves now (``GET /v1/model``)."""
    status, payload = _call(f"{base_url}/v1/model", timeout=timeout)
    if status != 200:
        raise HotSwapError(f"{base_url}/v1/model answered {status}: {payload.get('error')}")
    return payload


def plan_swap(base_url: str, model_id: str | None, timeout: float = 10.0) -> SwapPlan:
    """What serving ``model_id`` would change; asks the predictor and changes nothing."""
    if not base_url.startswith(("http://", "https://")):
        raise HotSwapError(f"the predictor URL must be http(s)://…, not {base_url!r}")
    now = serving_model(base_url, timeout)
    before = now.get("previous")
    served_before = before.get("model_id") if isinstance(before, dict) else None
    return SwapPlan(str(now["model_id"]), served_before, model_id)


def hot_swap(
    base_url: str, token: str, model_id: str | None, *, timeout: float = 120.0
) -> HotSwapResult:
    """Serve ``model_id`` (or, with ``None``, the model served before the current one)."""
    started = time.monotonic()
    plan = plan_swap(base_url, model_id)
    current = plan.serving
    if not plan.changed:
        return HotSwapResult(False, current, current, {"total": time.monotonic() - started})
    if model_id is None:
        status, payload = _call(
            f"{base_url}/admin/v1/rollback", method="POST", token=token, body={}, timeout=timeout
        )
    else:
        status, payload = _call(
            f"{base_url}/admin/v1/models",
            method="POST",
            token=token,
            body={"model_id": model_id},
            timeout=timeout,
        )
    swapped = time.monotonic()
    if status == 401:
        raise HotSwapError("the predictor refused the admin token (401)")
    if status == 404 and model_id is not None:
        raise HotSwapError(f"{model_id} is not in the predictor's store: {payload['error']}")
    if status != 200:
        raise HotSwapError(
            f"the predictor refused the switch ({status}): {payload.get('error')}; "
            f"it still serves {payload.get('serving_model_id') or current}"
        )
    target = str(payload["model_id"])
    after = serving_model(base_url)
    if after["model_id"] != target:
        raise HotSwapError(f"asked for {target}, but the predictor serves {after['model_id']}")
    done = time.monotonic()
    return HotSwapResult(
        True,
        target,
        current,
        {"swap": swapped - started, "verify": done - swapped, "total": done - started},
    )
