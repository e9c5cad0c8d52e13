"""The parity tolerance a bundle states, and the loosest one a node accepts."""

from __future__ import annotations

from dataclasses import dataclass

from edgecast.bundle.errors import BundleError
from edgecast.bundle.json_files import finite_number


@dataclass(frozen=True)
class ParityTolerance:
    """An edge forecast matches when |edge - cloud| <= atol + rtol * |cloud| (kWh)."""

    atol: float
    rtol: float


@dataclass(frozen=True)
class ParityLimit:
    """The loosest parity tolerance a node accepts, from its own configuration.

    A bundle states the tolerance its cloud build met. Were that the bar, a bundle could switch
    its own gate off (atol 1e300); a node refuses one that asks for more than this: ``rtol``, and
    atol as the fraction ``atol_std`` of the load's standard deviation (the cloud computes its
    atol with the same product, so a bundle of the default training is exactly at the limit).
    """

    rtol: float = 1e-4
    atol_std: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("rtol", "atol_std"):
            value = getattr(self, name)
            if finite_number(value) is None or value < 0:
                raise ValueError(f"the parity limit's {name} must be a finite number >= 0")

    def check(self, tolerance: ParityTolerance, load_std: float) -> None:
        atol = self.atol_std * load_std
        if tolerance.atol > atol or tolerance.rtol > self.rtol:
            raise BundleError(
                f"the bundle asks for a parity tolerance of atol {tolerance.atol:.3g} kWh and "
                f"rtol {tolerance.rtol:.3g}; this node allows at most atol {atol:.3g} kWh "
                f"({self.atol_std:g} of the load's standard deviation, {load_std:.4g} kWh) and "
                f"rtol {self.rtol:g}"
            )


DEFAULT_PARITY_LIMIT = ParityLimit()


def stated_tolerance(manifest: dict[str, object]) -> ParityTolerance:
    """The manifest's ``parity`` entry, refused unless it holds two finite numbers >= 0."""
    parity = manifest.get("parity")
    atol, rtol = (
        (finite_number(parity.get("atol")), finite_number(parity.get("rtol")))
        if isinstance(parity, dict)
        else (None, None)
    )
    if atol is None or rtol is None or atol < 0 or rtol < 0:
        raise BundleError(
            "manifest has no valid 'parity' tolerance {atol, rtol}: two finite numbers >= 0"
        )
    return ParityTolerance(atol, rtol)
