"""edgecast: energy-forecasting models trained in the cloud, verified and served on edge devices."""

__version__ = "0.1.0"
