"""``VideoMetricsCallback``: clip- and video-level metrics and figures at every validation/test end."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from pytorch_lightning import Callback
from torch import Tensor

from video_metrics.ids import stable_id
from video_metrics.metrics.base import NoDataError
from video_metrics.plots import report_figures
from video_metrics.suite import VideoClassificationMetrics

from .figures import log_figure, log_pr_curves, scalar_step

__all__ = ["VideoMetricsCallback"]

_STAGE_PREFIX = {"validate": "val", "test": "test"}


class VideoMetricsCallback(Callback):
    """Clip- and video-level metrics (and figures) for a ``LightningModule``, on one device or many.

    Default contract: ``validation_step``/``test_step`` returns a dict with ``scores`` (or
    ``logits``; ``probs`` when ``input="probs"``) ``(B, C)``, ``target`` ``(B,)`` (or ``(B, C)``
    multi-hot), and, for video-level metrics, ``video_ids`` ``(B,)`` (int64 tensor, or a list of
    strings, hashed with :func:`video_metrics.stable_id`) and ``clip_ids`` ``(B,)``. Otherwise
    pass ``extract(outputs, batch) -> dict`` with those keys.

    What it does, per stage in ``stages`` (``"validate"`` covers validation inside ``fit`` and
    ``trainer.validate()``; ``"test"`` covers ``trainer.test()``):

    * one :class:`~video_metrics.VideoClassificationMetrics` per stage and dataloader, created in
      ``setup`` (more loaders: on their first batch), on the module's device, reset at epoch start;
    * ``update()`` at every batch end (no host sync);
    * ``compute()`` on **every** rank at epoch end (the suite's packed sync), then the scalars are
      logged through ``pl_module.log`` so that they are in ``trainer.callback_metrics`` as
      ``val/clip/top1``, ``val/video/top1``, ... — monitorable by ``ModelCheckpoint`` and
      ``EarlyStopping``. Several loaders put the loader name in the key:
      ``val/<name>/clip/top1`` with names from ``dataloader_names`` or ``dataloader_<i>``.
      Under DDP the (already identical) values are logged with ``sync_dist=True`` to keep
      Lightning from warning;
    * figures (confusion matrix or top confusions, reliability diagrams, PR curves for
      multilabel, per-class bars) rendered on global rank zero only, every
      ``figures_every_n_epochs`` epochs, never in the sanity check, and sent to every logger
      through :func:`~video_metrics.callbacks.log_figure` at the step of the epoch's scalars.

    ``bootstrap=B`` (B > 0) adds ``<key>_ci_low`` / ``<key>_ci_high`` for the keys in ``ci_keys``
    (default: top-1, macro F1 and mAP/AUPRC of each level): percentile intervals over B resamples
    of the videos (:mod:`video_metrics.bootstrap`), so loggers can draw bands; the figures gain
    an intervals plot.

    ``fit_temperature=True`` fits a temperature at every epoch end (video level for ``mean_logits`` /
    ``mean_probs``, else clip level; :meth:`VideoClassificationMetrics.fit_temperature`) and logs
    ``<level>/temperature`` and ``<level>/ece_calibrated`` (cross-fitted over two halves of the
    videos), with a reliability diagram before/after among the figures.

    ``prefix`` is a format string with ``{stage}`` (``val`` or ``test``). Other keyword
    arguments go to the suite (``expected_video_ids``, ``calibration_bins``, ``ap_mode``,
    ``empty_class``, ``missing``, ``expected_clips``, ``threshold``, ``input``, ...).

    Distributed evaluation pads the last batch of each rank with duplicates; with ``clip_ids``
    the suite drops them, so the numbers equal a single-process run (see the README).
    ``bins=...`` (histogram mode, clip level only, bounded memory) keeps no rows, so there the
    padding duplicates are counted.

    >>> from video_metrics.callbacks import VideoMetricsCallback
    >>> callback = VideoMetricsCallback(num_classes=5, video_reduction="mean_logits", bootstrap=200)
    >>> callback.stages, callback.prefix
    (('validate', 'test'), '{stage}/')

    Pass it to ``Trainer(callbacks=[callback])``; the validation step returns its scores,
    targets and ids (see the class description), e.g.
    ``return {"scores": logits, "target": y, "video_ids": vid, "clip_ids": cid}``.
    """

    def __init__(self, num_classes: int, task: str = "multiclass", top_k: Sequence[int] = (1, 5),
                 video_reduction: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                 preset: Optional[str] = None, stages: Sequence[str] = ("validate", "test"), prefix: str = "{stage}/",
                 extract: Optional[Callable[[Any, Any], Mapping[str, Any]]] = None, log_figures: bool = True,
                 figures_every_n_epochs: int = 1, max_classes_in_matrix: int = 50,
                 dataloader_names: Optional[Sequence[str]] = None, bootstrap: int = 0,
                 ci_keys: Optional[Sequence[str]] = None, fit_temperature: bool = False, **suite_kwargs: Any) -> None:
        super().__init__()
        for s in stages:
            if s not in _STAGE_PREFIX:
                raise ValueError(f"`stages` entries must be 'validate' or 'test', got {s!r}")
        if "{stage}" not in prefix and len(set(stages)) > 1:
            raise ValueError(f"`prefix` must contain '{{stage}}' when several stages are evaluated, got {prefix!r}")
        if not isinstance(figures_every_n_epochs, int) or figures_every_n_epochs < 1:
            raise ValueError(f"`figures_every_n_epochs` must be a positive int, got {figures_every_n_epochs!r}")
        if extract is not None and not callable(extract):
            raise TypeError("`extract` must be a callable (outputs, batch) -> dict")
        self.suite_kwargs: Dict[str, Any] = dict(num_classes=num_classes, task=task, top_k=top_k,
                                                 video_reduction=video_reduction, class_names=class_names,
                                                 preset=preset, bootstrap=bootstrap, **suite_kwargs)
        # build one suite now so that bad arguments fail at construction, not in setup
        self._template = VideoClassificationMetrics(**self.suite_kwargs)
        if ci_keys is None:  # top-1, macro F1 and mAP/AUPRC of each level
            names = {"multiclass": ("top1", "f1_macro", "auprc_macro"), "binary": ("acc", "f1", "ap"),
                     "multilabel": ("f1_macro", "mAP")}[self._template.task]
            ci_keys = [f"{lv}/{n}" for lv in ("clip", "video") for n in names]
        self.ci_keys = tuple(ci_keys)
        self.fit_temperature = bool(fit_temperature)
        if self.fit_temperature:
            from video_metrics.temperature import check_level

            t = self._template
            self._temperature_level = "video" if t.video_reduction in ("mean_logits", "mean_probs") else "clip"
            check_level(t, self._temperature_level)  # a clear error now, not at the first epoch end
        self.stages = tuple(stages)
        self.prefix = prefix
        self.extract = extract
        self.log_figures = log_figures
        self.figures_every_n_epochs = figures_every_n_epochs
        self.max_classes_in_matrix = max_classes_in_matrix
        self.dataloader_names = list(dataloader_names) if dataloader_names is not None else None
        self.suites: Dict[Tuple[str, int], VideoClassificationMetrics] = {}
        self._warned_padding = False
        #: the last report (synced) per ``(stage, dataloader_idx)``, on every rank
        self.last_reports: Dict[Tuple[str, int], Any] = {}
        #: ``fit_temperature=True``: the last :class:`~video_metrics.temperature.TemperatureFit` per (stage, loader)
        self.last_temperature: Dict[Tuple[str, int], Any] = {}

    # ------------------------------------------------------------------ suites
    def _suite(self, stage: str, idx: int, pl_module) -> VideoClassificationMetrics:
        key = (stage, idx)
        if key not in self.suites:
            self.suites[key] = VideoClassificationMetrics(**self.suite_kwargs).to(pl_module.device)
        return self.suites[key]

    def setup(self, trainer, pl_module, stage: str) -> None:
        """Build the stage's suite on the module's device (Lightning gives the root device here, so ``.to()`` is
        right)."""
        for s in self._stages_for(stage):
            self._suite(s, 0, pl_module)

    def _stages_for(self, fn: str) -> List[str]:
        want = {"fit": ["validate"], "validate": ["validate"], "test": ["test"]}.get(fn, [])
        return [s for s in want if s in self.stages]

    def _key_prefix(self, trainer, stage: str, idx: int) -> str:
        p = self.prefix.format(stage=_STAGE_PREFIX[stage])
        n_loaders = self._num_loaders(trainer, stage)
        if n_loaders > 1:
            name = self.dataloader_names[idx] if self.dataloader_names and idx < len(self.dataloader_names) else f"dataloader_{idx}"
            p = f"{p}{name}/"
        return p

    @staticmethod
    def _num_loaders(trainer, stage: str) -> int:
        nb = trainer.num_val_batches if stage == "validate" else trainer.num_test_batches
        return len(nb) if isinstance(nb, (list, tuple)) else 1

    # ------------------------------------------------------------------ inputs
    def _inputs(self, outputs: Any, batch: Any) -> Dict[str, Any]:
        if self.extract is not None:
            d = self.extract(outputs, batch)
            source = "extract(outputs, batch)"
        else:
            d = outputs
            source = "validation_step/test_step"
        if not isinstance(d, Mapping):
            raise TypeError(f"VideoMetricsCallback: {source} must return a dict with 'scores' (or 'logits') and 'target', "
                            f"got {type(d).__name__}; pass `extract=` to adapt other outputs")
        scores = None
        for k in ("scores", "logits", "probs"):
            if k in d and d[k] is not None:
                scores = d[k]
                break
        if scores is None or d.get("target") is None:
            raise KeyError(f"VideoMetricsCallback: {source} returned keys {sorted(d)}; expected 'scores' (or 'logits') "
                           f"and 'target', optionally 'video_ids' and 'clip_ids'")
        return {"scores": scores, "target": d["target"], "video_ids": d.get("video_ids"), "clip_ids": d.get("clip_ids")}

    @staticmethod
    def _ids(x: Any, device) -> Optional[Tensor]:
        if x is None:
            return None
        if isinstance(x, Tensor):
            return x.to(device)
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], str):
            return stable_id(list(x), device=device)
        return torch.as_tensor(x, dtype=torch.long, device=device)

    # ------------------------------------------------------------------ hooks
    def _epoch_start(self, stage: str) -> None:
        if stage not in self.stages:
            return
        for (s, _), suite in self.suites.items():
            if s == stage:
                suite.reset()

    def _batch_end(self, stage: str, trainer, pl_module, outputs: Any, batch: Any, dataloader_idx: int) -> None:
        if stage not in self.stages:
            return
        d = self._inputs(outputs, batch)
        suite = self._suite(stage, dataloader_idx, pl_module)
        dev = suite.device
        scores = d["scores"].detach()
        target = d["target"].detach() if isinstance(d["target"], Tensor) else torch.as_tensor(d["target"])
        if suite.bins is not None:  # histogram mode: clip level only, no rows to deduplicate
            if trainer.world_size > 1 and not self._warned_padding:
                self._warned_padding = True
                warnings.warn("VideoMetricsCallback in histogram mode (bins=...) keeps no per-clip rows: the duplicates "
                              "Lightning's DistributedSampler pads ranks with are counted (at most world_size - 1 "
                              "clips per loader)", stacklevel=2)
            suite.update(scores.to(dev), target.to(dev))
            return
        suite.update(scores.to(dev), target.to(dev), self._ids(d["video_ids"], dev), self._ids(d["clip_ids"], dev))

    def _epoch_end(self, stage: str, trainer, pl_module) -> None:
        if stage not in self.stages:
            return
        epoch = trainer.current_epoch
        figures_due = (self.log_figures and not trainer.sanity_checking and epoch % self.figures_every_n_epochs == 0
                       and bool(trainer.loggers))
        sync = trainer.world_size > 1
        for (s, idx), suite in sorted(self.suites.items()):
            if s != stage:
                continue
            try:
                # collective: every rank computes (a rank-0-only compute would hang)
                report = suite.report() if figures_due or suite.bootstrap else None
                values = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in report.scalars.items()} if report \
                    else suite.compute()
            except NoDataError:
                continue  # this loader saw no row on any process: identical decision on every rank
            if report is not None:
                self.last_reports[(s, idx)] = report
            p = self._key_prefix(trainer, stage, idx)
            for k, v in values.items():
                pl_module.log(f"{p}{k}", v.float(), on_step=False, on_epoch=True, sync_dist=sync,
                              add_dataloader_idx=False)
            for k in self.ci_keys if report is not None else ():
                if k in report.intervals:  # bands for W&B / TensorBoard
                    lo, hi = report.intervals[k]
                    for name, v in (("ci_low", lo), ("ci_high", hi)):
                        pl_module.log(f"{p}{k}_{name}", torch.tensor(v, dtype=torch.float32), on_step=False,
                                      on_epoch=True, sync_dist=sync, add_dataloader_idx=False)
            fit = None
            if self.fit_temperature:  # collective too: every rank fits
                fit = suite.fit_temperature(self._temperature_level)
                self.last_temperature[(s, idx)] = fit
                lv = self._temperature_level
                for name, v in (("temperature", fit.temperature), ("ece_calibrated", fit.ece_cross_fitted)):
                    pl_module.log(f"{p}{lv}/{name}", torch.tensor(v, dtype=torch.float32), on_step=False, on_epoch=True,
                                  sync_dist=sync, add_dataloader_idx=False)
            if report is not None and figures_due and trainer.is_global_zero:
                self._log_figures(trainer, report, p)
                if fit is not None:
                    from video_metrics.plots import plot_temperature

                    log_figure(trainer, f"{p}{self._temperature_level}/temperature", plot_temperature(fit),
                               scalar_step(trainer))

    def _log_figures(self, trainer, report, prefix: str) -> None:
        step = scalar_step(trainer)
        for tag, fig in report_figures(report, self.max_classes_in_matrix):
            log_figure(trainer, f"{prefix}{tag}", fig, step)
            del fig
        if report.task == "multilabel":
            for level in ("clip", "video"):
                rep = getattr(report, level)
                if rep is None or rep.pr_counts is None:
                    continue
                classes = _worst_best(rep.ap, 3)
                log_pr_curves(trainer, f"{prefix}{level}/pr_curve", rep.pr_counts, classes, report.class_names, step)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        """Reset the validation suite (a new epoch evaluates its own rows)."""
        self._epoch_start("validate")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        """Reset the test suite."""
        self._epoch_start("test")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Feed the step's scores, targets and ids (read from ``outputs`` and ``batch``) to the validation suite."""
        self._batch_end("validate", trainer, pl_module, outputs, batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Feed the step's scores, targets and ids to the test suite."""
        self._batch_end("test", trainer, pl_module, outputs, batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Compute on every rank (the sync is collective), log the keys under ``val/`` and the figures, and reset."""
        self._epoch_end("validate", trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        """Compute, log the keys under ``test/`` and the figures, and reset."""
        self._epoch_end("test", trainer, pl_module)


def _worst_best(ap: Sequence[Optional[float]], n: int) -> List[int]:
    vals = [(v, i) for i, v in enumerate(ap) if v is not None and v == v]
    vals.sort()
    picked = [i for _, i in vals[:n]] + [i for _, i in vals[::-1][:n]]
    return sorted(set(picked))
