from .predictions import SyntheticPredictions, synthetic_predictions

__all__ = ["SyntheticPredictions", "synthetic_predictions"]
