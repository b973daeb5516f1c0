from .clips import CLASS_NAMES, ClipSet, MovingObjectClips, moving_object_clips
from .predictions import SyntheticPredictions, synthetic_predictions

__all__ = ["SyntheticPredictions", "synthetic_predictions", "moving_object_clips", "MovingObjectClips", "ClipSet",
           "CLASS_NAMES"]
