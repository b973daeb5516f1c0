"""Explanations for video classifiers: where and when a model looks.

* :func:`explain` (``explain(model, clips) -> Explanation``): any video classifier in one call —
  the layer chosen by tracing the model, the layout read or refused, Grad-CAM or attention rollout;
* :class:`GradCAM` (clip weights via Captum's ``LayerGradCam``, or per-frame weights) and
  :class:`GradCAMPlusPlus` for 3D CNNs and, through :class:`TokenGrid`, transformer blocks;
* :class:`AttentionRollout` for Hugging Face VideoMAE and TimeSformer;
* :func:`saliency_to_boxes` (proxy boxes), :func:`overlay_frames` (figures);
* quality scores: :func:`pointing_game`, :func:`energy_pointing_game`, :func:`deletion_auc`,
  :func:`randomization_check` / :func:`spearman`.

All maps are ``(N, T, H, W)`` in [0, 1], normalised per clip.
"""
from .api import Explanation, explain
from .boxes import Box, saliency_to_boxes
from .cam import GradCAM, GradCAMPlusPlus, TokenGrid, normalize_per_clip
from .overlay import frame_indices, overlay_frames
from .quality import (
    deletion_auc,
    energy_pointing_game,
    pointing_game,
    randomization_check,
    randomize_parameters,
    spearman,
)
from .rollout import AttentionRollout, fuse_heads, rollout_arch, rollout_rows, timesformer_rollout_rows

__all__ = ["explain", "Explanation", "rollout_arch", "GradCAM", "GradCAMPlusPlus", "TokenGrid", "normalize_per_clip", "AttentionRollout", "fuse_heads",
           "rollout_rows", "timesformer_rollout_rows", "Box", "saliency_to_boxes", "overlay_frames", "frame_indices",
           "pointing_game", "energy_pointing_game", "deletion_auc", "spearman", "randomize_parameters",
           "randomization_check"]
