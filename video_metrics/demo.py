"""``video-metrics demo``: train a tiny 3D CNN on generated moving-object clips with Lightning,
validate with several clips per video, and write the metrics, figures, explanations and a report.

The generated videos are made for multi-clip testing: in half of the clips the object is
occluded for a while, appears late, leaves, or is absent (``missing_evidence``), so a single clip
is often undecidable while its video is not — the video level (mean of the clip logits) beats the
clip level, as with real 10- or 30-view testing. The validation callback adds bootstrap intervals
by video and fits a temperature (ECE before / after, cross-fitted); the report shows the views
curve (video top-1 against the number of views used).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Dict

import torch
from torch.utils.data import DataLoader

from .data import CLASS_NAMES, MovingObjectClips, moving_object_clips
from .models import LitVideoClassifier, TinyVideoNet
from .report import write_report

__all__ = ["DemoConfig", "run_demo", "summary_sentence"]


@dataclass
class DemoConfig:
    """The demo's settings: clips of moving objects (``train_videos``, ``val_videos``,
    ``clips_per_video``, ``frames``, ``size``; ``missing_evidence``: the share of clips where the
    object is partly or wholly out of view), the tiny 3D CNN's training, the bootstrap
    replicates and the report folder ``out``.

    >>> DemoConfig.quick().epochs
    2
    """
    out: str = "video_metrics_demo"
    train_videos: int = 480
    val_videos: int = 60
    clips_per_video: int = 4
    missing_evidence: float = 0.5
    frames: int = 8
    size: int = 32
    epochs: int = 10
    batch_size: int = 32
    bootstrap: int = 200
    lr: float = 6e-3
    seed: int = 0
    progress: bool = True

    @classmethod
    def quick(cls, **kw) -> "DemoConfig":
        """A configuration that trains for seconds (the tests' demo)."""
        base = dict(train_videos=96, val_videos=16, epochs=2)
        base.update(kw)
        return cls(**base)


def run_demo(cfg: DemoConfig) -> Dict[str, object]:
    """Run the demo; returns the final scalars, the report paths and the TensorBoard folder."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from video_metrics.callbacks import ExplainCallback, VideoMetricsCallback

    t0 = time.perf_counter()
    pl.seed_everything(cfg.seed, verbose=False)
    train = moving_object_clips(cfg.train_videos, 1, cfg.frames, cfg.size, seed=cfg.seed + 1,
                                missing_evidence=cfg.missing_evidence)
    val = moving_object_clips(cfg.val_videos, cfg.clips_per_video, cfg.frames, cfg.size, seed=cfg.seed + 2,
                              missing_evidence=cfg.missing_evidence)
    train_dl = DataLoader(MovingObjectClips(train), batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(cfg.seed))
    val_dl = DataLoader(MovingObjectClips(val), batch_size=cfg.batch_size)
    module = LitVideoClassifier(TinyVideoNet(len(CLASS_NAMES)), lr=cfg.lr)
    # figures (the slow part of a validation end: matplotlib) every few epochs, the last one included
    every = next(k for k in (3, 2, 1) if (cfg.epochs - 1) % k == 0)
    metrics_cb = VideoMetricsCallback(len(CLASS_NAMES), top_k=(1, 5), video_reduction="mean_logits",
                                      class_names=CLASS_NAMES, stages=("validate",), bootstrap=cfg.bootstrap,
                                      fit_temperature=True, figures_every_n_epochs=every)
    # the layer is found by tracing the model (net.block3, the last 3D map before the pooling)
    explain_cb = ExplainCallback(method="gradcam++", num_clips=4, clip_key="clip", boxes_key="boxes",
                                 class_names=CLASS_NAMES, tolerance_px=4, weights="frame", every_n_epochs=every)
    tb_root = os.path.join(cfg.out, "tensorboard")
    logger = TensorBoardLogger(tb_root, name="demo")
    trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator="auto", devices=1, logger=logger,
                         callbacks=[metrics_cb, explain_cb], enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=cfg.progress, log_every_n_steps=5, num_sanity_val_steps=0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(module, train_dl, val_dl)
    report = metrics_cb.last_reports[("validate", 0)]
    fit = metrics_cb.last_temperature.get(("validate", 0))
    extra = {}
    if fit is not None:
        from .plots import plot_temperature

        report.temperature = fit.to_dict()
        extra["temperature"] = plot_temperature(fit)
    last = explain_cb.last
    if last is not None:
        from .explain import overlay_frames

        for i in range(last["maps"].shape[0]):
            p, t = int(last["predictions"][i]), last["targets"][i]
            title = (f"Grad-CAM++: predicted {CLASS_NAMES[p]} ({float(last['confidence'][i]):.2f}), "
                     f"true {CLASS_NAMES[t]}")
            extra[f"explain/clip_{i}"] = overlay_frames(last["clips"][i], last["maps"][i], last["boxes"][i],
                                                        title=title)[0]
    notes = [f"Tiny 3D CNN trained for {cfg.epochs} epochs on {cfg.train_videos} generated clips; validation: "
             f"{cfg.val_videos} videos x {cfg.clips_per_video} clips (video = mean of clip logits). In "
             f"{cfg.missing_evidence:.0%} of the clips the object is occluded for a while, appears late, leaves or "
             "is absent, so a single clip is often undecidable while its video is not."]
    if last is not None and "val/explain/pointing_game" in last:
        notes.append(f"Explanations (Grad-CAM++, per-frame weights) of the 4 clips shown: pointing game "
                     f"{last['val/explain/pointing_game']:.2f} (tolerance 4 px), energy pointing game "
                     f"{last['val/explain/energy_pointing_game']:.2f}.")
    paths = write_report(report, os.path.join(cfg.out, "report"), title="video_metrics demo report",
                         source="video-metrics demo", extra_figures=extra, notes=notes)
    shown = val.visible[:, 0].any(-1)  # (clips,): the object shows in some frame of the clip
    whole = val.visible[:, 0].all(-1)
    per_video = shown.reshape(cfg.val_videos, cfg.clips_per_video)
    evidence = {"clips_missing": float((~whole).float().mean()),
                "videos_without_evidence": float((~per_video.any(1)).float().mean())}
    return {"scalars": report.scalars, "report": paths, "tensorboard": tb_root, "log_dir": logger.log_dir,
            "seconds": time.perf_counter() - t0, "explain": last, "evidence": evidence,
            "intervals": report.intervals, "temperature": fit, "views": report.views}


def summary_sentence(scalars: Dict[str, float], intervals: Dict[str, tuple], evidence: Dict[str, float]) -> str:
    """What the demo's headline numbers say, worded from the numbers themselves."""
    v, c = scalars["video/top1"], scalars["clip/top1"]
    lo, hi = intervals["video/top1"]
    if lo > c:
        verdict = "the video level beats the clip level beyond its interval"
    elif hi < c:
        verdict = "the video level is below the clip level beyond its interval"
    else:
        verdict = "the clip top-1 lies inside the video level's interval: no difference shown at this size"
    return (f"Video top-1 {v:.3f} [{lo:.3f}, {hi:.3f}] against clip top-1 {c:.3f}: {verdict}. "
            f"{evidence['clips_missing']:.0%} of the validation clips miss part or all of the evidence; "
            f"{evidence['videos_without_evidence']:.0%} of the videos miss it in every clip.")
