"""A verified bundle on a runtime: forecasts in kWh, and the parity gate.

A forecaster exists only after the runtime has reproduced the cloud's reference forecasts
within the bundle's tolerance on this machine (the paper's parity experiment, made a gate). The
tolerance is the bundle's, but never looser than the node's ``ParityLimit`` (checked when the
bundle is loaded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecast.bundle import Bundle, BundleError
from edgecast.features import load_frame, model_inputs, to_kwh
from edgecast.runtimes import Runtime, create_runtime
from edgecast.store_rules import shown


class ParityError(BundleError):
    """The runtime does not reproduce the bundle's reference outputs."""


@dataclass(frozen=True)
class ParityReport:
    cases: int
    max_abs_diff: float
    worst_allowed: float
    ok: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "cases": self.cases,
            "max_abs_diff_kwh": self.max_abs_diff,
            "allowed_kwh_at_worst": self.worst_allowed,
            "ok": self.ok,
        }


class Forecaster:
    def __init__(self, bundle: Bundle, runtime: Runtime) -> None:
        self.bundle = bundle
        self.runtime = runtime
        self.config = bundle.config
        self.scaling = bundle.scaling

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def forecast_batch(
        self,
        loads: np.ndarray,
        last_timestamps: np.ndarray,
        temperatures: np.ndarray | None = None,
    ) -> np.ndarray:
        frame = load_frame(self.config, self.scaling, loads)
        inputs = model_inputs(
            self.config, self.scaling, loads, last_timestamps, temperatures, frame=frame
        )
        return to_kwh(self.config, self.scaling, loads, self.runtime.predict(inputs), frame=frame)

    def forecast(
        self, loads: np.ndarray, last_timestamp: int, temperatures: np.ndarray | None = None
    ) -> np.ndarray:
        return self.forecast_batch(
            loads[None, :],
            np.asarray([last_timestamp], dtype=np.int64),
            None if temperatures is None else temperatures[None, :],
        )[0]

    def check_parity(self) -> ParityReport:
        ref = self.bundle.reference
        edge = self.forecast_batch(ref.loads, ref.last_timestamps, ref.temperatures)
        diff = np.abs(edge - ref.outputs)
        allowed = self.bundle.tolerance.atol + self.bundle.tolerance.rtol * np.abs(ref.outputs)
        worst = int(np.argmax(diff - allowed))
        return ParityReport(
            cases=len(ref.outputs),
            max_abs_diff=float(diff.max()) if np.isfinite(diff).all() else float("inf"),
            worst_allowed=float(allowed.flat[worst]),
            ok=bool(np.isfinite(edge).all() and (diff <= allowed).all()),
        )


def load_forecaster(bundle: Bundle, runtime_name: str) -> tuple[Forecaster, ParityReport]:
    """Builds the runtime and passes the parity gate, or raises ParityError with the figures."""
    try:
        runtime = create_runtime(runtime_name, bundle)
    except BundleError:
        raise
    except Exception as exc:  # a framework refusing the bundle is a refusal
        raise BundleError(
            f"the {runtime_name} runtime cannot load the bundle: {shown(str(exc))}"
        ) from None
    forecaster = Forecaster(bundle, runtime)
    try:
        report = forecaster.check_parity()
    except Exception as exc:  # a model file that does not fit its architecture, say
        raise BundleError(
            f"the {runtime_name} runtime cannot forecast the bundle's reference inputs: "
            f"{shown(str(exc))}"
        ) from None
    if not report.ok:
        raise ParityError(
            f"parity check failed on the {runtime_name} runtime: forecasts differ from the "
            f"bundle's reference outputs by up to {report.max_abs_diff:.6g} kWh, allowed "
            f"{report.worst_allowed:.6g} kWh ({report.cases} reference cases)"
        )
    return forecaster, report
