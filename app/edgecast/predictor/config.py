"""Predictor configuration: passed in, never read from globals by the application."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgecast.bundle import DEFAULT_PARITY_LIMIT, ParityLimit
from edgecast.predictor.live_accuracy import DEFAULT_MAX_SERIES
from edgecast.predictor.threads import MAX_THREADS, default_threads
from edgecast.predictor.validation import FIRST_YEAR, LAST_YEAR, Years
from edgecast.runtimes import RUNTIMES

TOKEN_ENV = "EDGECAST_ADMIN_TOKEN"
TOKEN_FILE_ENV = "EDGECAST_ADMIN_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16


class ConfigError(ValueError):
    """A configuration the predictor refuses to start with."""


@dataclass(frozen=True)
class PredictorConfig:
    model_store: Path
    model_id: str | None = None
    runtime: str = "keras"
    public_key_path: Path | None = None
    admin_token: str | None = None
    max_body_bytes: int = 64 * 1024
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = field(default_factory=default_threads)
    shutdown_delay_s: float = 0.0
    drain_timeout_s: float = 30.0
    connection_limit: int = 1000
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 10.0
    first_year: int = FIRST_YEAR
    last_year: int = LAST_YEAR
    # The loosest parity tolerance a bundle may ask for: rtol, and atol as a fraction of the
    # load's standard deviation. The node's bar, never the bundle's.
    max_parity_rtol: float = DEFAULT_PARITY_LIMIT.rtol
    max_parity_atol_std: float = DEFAULT_PARITY_LIMIT.atol_std
    # Series (the requests' "series" field) whose forecasts live accuracy remembers; the least
    # recently used is forgotten beyond it.
    live_max_series: int = DEFAULT_MAX_SERIES
    # Score the previous model (the one a swap replaced, or shadow_model_id loaded at start) on
    # the same requests, off the response path.
    shadow: bool = False
    shadow_model_id: str | None = None
    # At most this many shadow forecasts a second; the requests beyond are counted as skipped.
    shadow_rate: float = 20.0

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.admin_token is not None and len(self.admin_token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters")
        if self.max_body_bytes < 1024:
            raise ConfigError("max_body_bytes must be at least 1024")
        if not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"threads must be 1 to {MAX_THREADS}, got {self.threads}")
        if self.connection_limit < 1:
            raise ConfigError("the connection limit must be positive")
        if self.idle_timeout_s <= 0 or self.request_timeout_s <= 0:
            raise ConfigError("the idle and request timeouts must be positive")
        if self.shadow_model_id is not None and not self.shadow:
            raise ConfigError("shadow_model_id needs shadow scoring on")
        if not 0 < self.shadow_rate <= 10_000:
            raise ConfigError("shadow_rate must be in (0, 10000] forecasts a second")
        if self.live_max_series < 1:
            raise ConfigError("live_max_series must be positive")
        try:
            Years(self.first_year, self.last_year)
            ParityLimit(self.max_parity_rtol, self.max_parity_atol_std)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def years(self) -> Years:
        return Years(self.first_year, self.last_year)

    @property
    def parity_limit(self) -> ParityLimit:
        return ParityLimit(self.max_parity_rtol, self.max_parity_atol_std)


def read_admin_token(token_file: Path | None = None) -> str | None:
    """The admin token from a file (preferred) or the environment; None disables admin routes."""
    path = token_file or (
        Path(os.environ[TOKEN_FILE_ENV]) if TOKEN_FILE_ENV in os.environ else None
    )
    if path is not None:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the admin token file {path}: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"the admin token file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None
