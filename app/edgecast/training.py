"""Cloud-domain training: fit the SBN network on one building, evaluate it on held-out time
after the training period against seasonal-naive and linear baselines, and write a bundle."""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from edgecast import __version__
from edgecast.architecture import SBNConfig
from edgecast.baselines import LinearBaseline, seasonal_naive
from edgecast.bundle import ParityTolerance, Reference, load_bundle, write_bundle
from edgecast.data import DEFAULT_DATA_DIR, load_building, summarize
from edgecast.features import Scaling, model_inputs, to_frame, to_kwh
from edgecast.forecaster import load_forecaster
from edgecast.framework_output import held_framework_prints, quiet_framework_logging
from edgecast.metrics import accuracy
from edgecast.progress import EpochProgress, keras_callback, summary_line
from edgecast.windows import Samples, make_samples, split_by_time

DAY = 86400


@dataclass(frozen=True)
class TrainOptions:
    building: str
    out_dir: Path
    data_dir: Path = DEFAULT_DATA_DIR
    config: SBNConfig = field(default_factory=SBNConfig)
    test_days: int = 56
    val_days: int = 28
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-3
    patience: int = 5
    # Chosen on the development set's validation weeks (docs/forecast-accuracy.md): the MAE
    # that forecasts are judged by, trained for directly, beat the squared error.
    loss: str = "mae"
    seed: int = 0
    litert: bool = True
    reference_cases: int = 16
    parity_rtol: float = 1e-4
    parity_atol_std: float = 1e-4
    signing_key_path: Path | None = None
    until: datetime | None = None
    # Warm start (edgecast retrain): begin from these weights instead of a random draw.
    initial_weights: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where the bundle was written (its folder is named by the model_id, and its manifest holds
    the rest) and the held-out accuracy to report."""

    bundle_path: Path
    metrics: dict[str, dict[str, float]]

    @property
    def ratio_to_naive(self) -> float:
        return naive_ratio(self.metrics)


def naive_ratio(metrics: dict[str, dict[str, float]]) -> float:
    """The model's held-out MAE over seasonal naive's: above 1, the edge could do better alone."""
    return metrics["sbn"]["mae"] / metrics["seasonal_naive"]["mae"]


def _period(samples: Samples) -> dict[str, str]:
    first = int(samples.last_timestamps.min()) + 3600
    last = int(samples.last_timestamps.max()) + 3600 * samples.targets.shape[1]
    iso = lambda s: datetime.fromtimestamp(s, UTC).isoformat()  # noqa: E731
    return {"first_target": iso(first), "last_target": iso(last), "samples": len(samples)}


def _litert_export(model: object) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with held_framework_prints():
        return converter.convert()


def train(
    options: TrainOptions,
    log: Callable[[str], object] = print,
    progress: TextIO | None = None,
) -> TrainResult:
    """``log`` takes the lines that say what is being done and how training ended (early
    stopping, the weights kept); ``progress``, where given, one line per epoch (on a terminal,
    one line redrawn as batches pass)."""
    quiet_framework_logging()
    import keras
    import tensorflow as tf

    from edgecast.sbn import assign_weights, build_sbn, weights_of

    config = options.config
    until = None if options.until is None else pd.Timestamp(options.until)
    frame = load_building(options.building, options.data_dir, until=until)
    if not config.use_temperature:
        frame = frame[["load"]]
    summary = summarize(options.building, frame)
    samples = make_samples(
        frame, config.window, config.horizon, with_temperature=config.use_temperature
    )
    end = int(frame.index[-1].timestamp()) + 3600
    test_start = end - options.test_days * DAY
    val_start = test_start - options.val_days * DAY
    train_set, val_set, test_set = split_by_time(samples, val_start, test_start)
    for name, part in (("training", train_set), ("validation", val_set), ("test", test_set)):
        if len(part) == 0:
            raise ValueError(f"no complete {name} samples for {options.building}")
    log(
        f"{options.building}: {len(train_set)} training, {len(val_set)} validation, "
        f"{len(test_set)} held-out samples ({summary.missing_load_hours} missing hours)"
    )

    train_hours = frame.loc[frame.index < datetime.fromtimestamp(val_start, UTC)]
    scaling = Scaling.fit(
        train_hours["load"].to_numpy(),
        train_hours["temperature"].to_numpy() if config.use_temperature else None,
    )

    def inputs(part: Samples) -> dict[str, np.ndarray]:
        return model_inputs(config, scaling, part.loads, part.last_timestamps, part.temperatures)

    def scaled(part: Samples) -> np.ndarray:
        return to_frame(config, scaling, part.loads, part.targets)

    keras.utils.set_random_seed(options.seed)
    model = build_sbn(config)
    if options.initial_weights is not None:
        assign_weights(model, config, options.initial_weights)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate), loss=options.loss)
    callbacks = [
        keras.callbacks.EarlyStopping(
            patience=options.patience, restore_best_weights=True, monitor="val_loss"
        )
    ]
    if progress is not None:
        live = progress.isatty()
        callbacks.append(
            keras_callback(
                EpochProgress(options.building, options.epochs, options.patience, progress, live)
            )
        )
    started = time.monotonic()
    history = model.fit(
        inputs(train_set),
        scaled(train_set),
        validation_data=(inputs(val_set), scaled(val_set)),
        epochs=options.epochs,
        batch_size=options.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    epochs_run = len(history.history["loss"])
    log(
        summary_line(
            options.building,
            history.history["val_loss"],
            options.epochs,
            options.patience,
            time.monotonic() - started,
        )
    )

    # No Python control flow to convert: AutoGraph would only parse this module's source, and
    # warn where it cannot (a file changed since it was imported).
    call = tf.function(lambda xs: model(xs, training=False), reduce_retracing=True, autograph=False)

    def forecast(part: Samples) -> np.ndarray:
        return to_kwh(config, scaling, part.loads, call(inputs(part)).numpy())

    linear = LinearBaseline(config.horizon)
    linear.fit(train_set.loads, train_set.last_timestamps, train_set.targets)
    metrics = {
        "sbn": accuracy(test_set.targets, forecast(test_set)),
        "seasonal_naive": accuracy(
            test_set.targets, seasonal_naive(test_set.loads, config.horizon)
        ),
        "linear": accuracy(
            test_set.targets, linear.predict(test_set.loads, test_set.last_timestamps)
        ),
    }

    picks = np.linspace(0, len(test_set) - 1, options.reference_cases).round().astype(int)
    ref_set = test_set.take(picks)
    reference = Reference(
        loads=ref_set.loads,
        last_timestamps=ref_set.last_timestamps,
        outputs=forecast(ref_set),
        temperatures=ref_set.temperatures,
    )
    weights = weights_of(model)
    litert_model = _litert_export(model) if options.litert else None

    digest = hashlib.sha256(b"".join(w.tobytes() for w in weights.values())).hexdigest()[:8]
    created = datetime.now(UTC)
    model_id = f"sbn-{options.building}-{created:%Y%m%d-%H%M%S}-{digest}"
    signing_key = None
    if options.signing_key_path is not None:
        from edgecast.signing import load_private_key

        signing_key = load_private_key(options.signing_key_path)
    metadata = {
        "training": {
            "data": summary.to_dict(),
            "train": _period(train_set),
            "validation": _period(val_set),
            "test": _period(test_set),
            "epochs": epochs_run,
            "loss": options.loss,
            "learning_rate": options.learning_rate,
            "seed": options.seed,
            "until": None if until is None else until.isoformat(),
        },
        "metrics": metrics,
        # What rollout-model.yml holds a bundle to: no worse than seasonal naive on held-out time.
        "floor": {
            "metric": "mae",
            "ratio_to_seasonal_naive": naive_ratio(metrics),
            "ratio_to_linear": metrics["sbn"]["mae"] / metrics["linear"]["mae"],
            "period": _period(test_set),
        },
        "frameworks": {
            "edgecast": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    path = write_bundle(
        options.out_dir,
        model_id=model_id,
        config=config,
        scaling=scaling,
        weights=weights,
        reference=reference,
        tolerance=ParityTolerance(
            atol=options.parity_atol_std * scaling.load_std, rtol=options.parity_rtol
        ),
        metadata=metadata,
        litert_model=litert_model,
        signing_key=signing_key,
    )
    # The cloud holds itself to the edge's gate: the written bundle must pass it here too.
    public_key = signing_key.public_key() if signing_key is not None else None
    bundle = load_bundle(path, public_key)
    for runtime in ("keras", "litert") if litert_model else ("keras",):
        load_forecaster(bundle, runtime)
    return TrainResult(path, metrics)


def format_metrics(building: str, metrics: dict[str, dict[str, float]]) -> str:
    lines = [
        f"held-out accuracy for {building} ({metrics['sbn']['n']} forecast hours)",
        f"{'model':<16}{'MAE kWh':>10}{'RMSE kWh':>10}{'MAPE %':>9}{'CV(RMSE) %':>12}",
    ]
    for name, row in metrics.items():
        lines.append(
            f"{name:<16}{row['mae']:>10.3f}{row['rmse']:>10.3f}{row['mape']:>9.2f}"
            f"{row['cv_rmse']:>12.2f}"
        )
    return "\n".join(lines)
