"""Pure tensor kernels: classification, ranking, calibration (and temperature fitting), aggregation."""
from .calibration import fit_temperature

__all__ = ["fit_temperature"]
