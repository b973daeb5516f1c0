"""``ExplainCallback``: heatmap overlays (with proxy boxes) of a few validation clips, every N epochs."""
from __future__ import annotations

import heapq
from typing import Any, Callable, List, Optional, Sequence, Union

import torch
from pytorch_lightning import Callback
from torch import Tensor, nn

from video_metrics.explain import (
    AttentionRollout,
    GradCAM,
    GradCAMPlusPlus,
    energy_pointing_game,
    overlay_frames,
    pointing_game,
    saliency_to_boxes,
)

from .figures import log_figure, loggers_of, scalar_step

__all__ = ["ExplainCallback"]


def _keys_present(batch: Any) -> str:
    if isinstance(batch, dict):
        return f"the batch is a dict with keys {sorted(map(str, batch))}"
    if isinstance(batch, (list, tuple)):
        return f"the batch is a {type(batch).__name__} of {len(batch)} items (indices 0..{len(batch) - 1})"
    return f"the batch is a {type(batch).__name__}"


def _require(batch: Any, key: Union[str, int], name: str):
    value = _get(batch, key)
    if value is None:
        raise ValueError(f"ExplainCallback: {name}={key!r} is not in the validation batch; {_keys_present(batch)}. "
                         f"Pass {name}= the key (or index) that holds it")
    return value


def _get(batch: Any, key: Union[str, int]):
    if isinstance(batch, dict):
        return batch.get(key)
    if isinstance(batch, (list, tuple)) and isinstance(key, int) and key < len(batch):
        return batch[key]
    return None


class ExplainCallback(Callback):
    """Explain a few validation clips at validation end and log overlays to every logger.

    * ``method``: ``"gradcam"``, ``"gradcam++"`` (``target_layer``: a module of the
      LightningModule or its dotted name, e.g. ``"model.block3"``; default: the last ``Conv3d``)
      or ``"rollout"`` (the Hugging Face VideoMAE/TimeSformer model inside the module).
      ``weights`` (``"clip"``/``"frame"``), ``layout``, ``reshape`` and ``forward_fn`` as in
      :class:`~video_metrics.explain.GradCAM`; ``forward_fn`` defaults to calling the module.
    * ``select="fixed"``: the first ``num_clips`` clips seen (kept on the CPU once, the same clips
      every epoch, so the maps can be compared across epochs). ``"confident_errors"``: the
      ``num_clips`` most confident mistakes of the epoch (needs the step output's ``scores``/
      ``logits`` and ``target``, or ``extract``; reads each batch's confidences on rank zero).
    * Batches: ``clip_key`` (dict key or tuple index) holds the clips, ``target_key`` the labels;
      with ``boxes_key`` (``(N, T, 4)`` or ``(N, K, T, 4)`` true boxes, as
      :class:`~video_metrics.data.MovingObjectClips` gives) the pointing game (tolerance
      ``tolerance_px``) and the energy pointing game of the explained clips are logged too.
    * Runs on global rank zero only, with the unwrapped module, every ``every_n_epochs`` epochs,
      never in the sanity check; works in ``fit`` (no_grad) and ``trainer.validate()``
      (inference mode: the clips are cloned and grad re-enabled locally). Figures go through
      :func:`~video_metrics.callbacks.log_figure` as ``<prefix>clip_<i>``.
    """

    def __init__(self, method: str = "gradcam", target_layer: Optional[Union[nn.Module, str]] = None,
                 num_clips: int = 4, select: str = "fixed", every_n_epochs: int = 1, layout: str = "NCTHW",
                 reshape=None, forward_fn: Optional[Callable[[Tensor], Tensor]] = None,
                 clip_key: Union[str, int] = "x", target_key: Union[str, int] = "target",
                 boxes_key: Optional[Union[str, int]] = None, class_names: Optional[Sequence[str]] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, weights: str = "clip",
                 threshold: float = 0.2, max_frames: int = 8, tolerance_px: int = 0, prefix: str = "val/explain/",
                 extract: Optional[Callable[[Any, Any], dict]] = None) -> None:
        super().__init__()
        if method not in ("gradcam", "gradcam++", "rollout"):
            raise ValueError(f"`method` must be 'gradcam', 'gradcam++' or 'rollout', got {method!r}")
        if select not in ("fixed", "confident_errors"):
            raise ValueError(f"`select` must be 'fixed' or 'confident_errors', got {select!r}")
        if not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"`num_clips` must be a positive int, got {num_clips!r}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive int, got {every_n_epochs!r}")
        if layout not in ("NCTHW", "NTCHW"):
            raise ValueError(f"`layout` must be 'NCTHW' or 'NTCHW', got {layout!r}")
        if weights not in ("clip", "frame"):
            raise ValueError(f"`weights` must be 'clip' or 'frame', got {weights!r}")
        self.method, self.target_layer, self.num_clips, self.select = method, target_layer, num_clips, select
        self.every_n_epochs, self.layout, self.reshape, self.forward_fn = every_n_epochs, layout, reshape, forward_fn
        self.clip_key, self.target_key, self.boxes_key = clip_key, target_key, boxes_key
        self.class_names = list(class_names) if class_names is not None else None
        self.mean, self.std, self.weights, self.threshold = mean, std, weights, threshold
        self.max_frames, self.tolerance_px, self.prefix, self.extract = max_frames, tolerance_px, prefix, extract
        self._fixed: List[tuple] = []  # (clip, target, boxes) on CPU
        self._errors: List[tuple] = []  # heap of (confidence, counter, clip, target, boxes)
        self._counter = 0
        #: the last explained batch: dict with clips, maps, boxes, targets, predictions (CPU), for inspection
        self.last: Optional[dict] = None

    # ------------------------------------------------------------------ collecting clips
    def _due(self, trainer) -> bool:
        return (trainer.is_global_zero and not trainer.sanity_checking
                and trainer.current_epoch % self.every_n_epochs == 0)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._errors = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.is_global_zero or dataloader_idx != 0:
            return
        clips = _require(batch, self.clip_key, "clip_key")
        target = _get(batch, self.target_key)
        boxes = _require(batch, self.boxes_key, "boxes_key") if self.boxes_key is not None else None
        if self.select == "fixed":
            need = self.num_clips - len(self._fixed)
            for i in range(min(need, clips.shape[0])):
                self._fixed.append(self._keep(clips, target, boxes, i))
            return
        if not self._due(trainer):
            return
        d = self.extract(outputs, batch) if self.extract is not None else outputs
        scores = None
        if isinstance(d, dict):
            scores = next((d[k] for k in ("scores", "logits", "probs") if d.get(k) is not None), None)
            target = d.get("target", target)
        if scores is None or target is None or scores.dim() != 2:
            raise KeyError("ExplainCallback(select='confident_errors') needs the step output to hold 'scores' (or "
                           "'logits') (N, C) and 'target' (N,); pass extract=")
        probs = scores.detach().float().softmax(1)
        conf, pred = probs.max(1)
        wrong = (pred != target.to(pred.device)).cpu()
        conf = conf.cpu()
        for i in torch.nonzero(wrong).flatten().tolist():
            item = (float(conf[i]), self._counter)
            self._counter += 1
            if len(self._errors) < self.num_clips:
                heapq.heappush(self._errors, item + (self._keep(clips, target, boxes, i),))
            elif item[0] > self._errors[0][0]:
                heapq.heapreplace(self._errors, item + (self._keep(clips, target, boxes, i),))

    @staticmethod
    def _keep(clips, target, boxes, i):
        with torch.inference_mode(False):
            c = clips[i].detach().cpu().clone()
            t = None if target is None else int(target[i]) if target[i].dim() == 0 else target[i].detach().cpu().clone()
            b = None if boxes is None else boxes[i].detach().cpu().clone()
        return c, t, b

    # ------------------------------------------------------------------ explaining
    def _resolve_layer(self, pl_module) -> nn.Module:
        if isinstance(self.target_layer, nn.Module):
            return self.target_layer
        if isinstance(self.target_layer, str):
            return pl_module.get_submodule(self.target_layer)
        convs = [m for m in pl_module.modules() if isinstance(m, nn.Conv3d)]
        if not convs:
            raise ValueError("ExplainCallback: no target_layer given and the module has no Conv3d; pass target_layer=")
        return convs[-1]

    def _explainer(self, pl_module):
        if self.method == "rollout":
            model = pl_module if hasattr(pl_module, "config") else next(
                (m for m in pl_module.modules() if getattr(getattr(m, "config", None), "model_type", None)
                 in ("videomae", "timesformer")), None)
            if model is None:
                raise ValueError("ExplainCallback(method='rollout') needs a Hugging Face VideoMAE or TimeSformer model")
            return AttentionRollout(model)
        cls = GradCAM if self.method == "gradcam" else GradCAMPlusPlus
        return cls(pl_module, self._resolve_layer(pl_module), weights=self.weights, layout=self.layout,
                   reshape=self.reshape, forward_fn=self.forward_fn)

    def _logits(self, pl_module, x: Tensor) -> Tensor:
        out = self.forward_fn(x) if self.forward_fn is not None else pl_module(x)
        return out if isinstance(out, Tensor) else out.logits

    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names is not None and 0 <= c < len(self.class_names) else str(c)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._due(trainer):
            return
        items = self._fixed if self.select == "fixed" else [e[2] for e in sorted(self._errors, reverse=True)]
        if not items:
            return
        x = torch.stack([c for c, _, _ in items]).to(pl_module.device)
        targets = [t for _, t, _ in items]
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode(False), torch.no_grad():
                probs = self._logits(pl_module, x.clone()).float().softmax(1)
            tgt = None
            if self.method != "rollout" and all(isinstance(t, int) for t in targets):
                tgt = torch.tensor(targets, device=pl_module.device) if self.select == "confident_errors" else None
            maps = self._explainer(pl_module)(x, tgt)  # default: the predicted class
        finally:
            pl_module.train(was_training)
        maps = maps.cpu()
        boxes = saliency_to_boxes(maps, self.threshold)
        conf, pred = probs.max(1)
        step = scalar_step(trainer)
        clips_cpu = x.cpu()
        for i in range(len(items)):
            clip = clips_cpu[i]
            lay = "CTHW" if self.layout == "NCTHW" else "TCHW"
            p = int(pred[i])
            what = "predicted class" if tgt is None else "true class"
            title = f"{self.method}: predicted {self._name(p)} ({float(conf[i]):.2f})"
            if isinstance(targets[i], int):
                title += f", true {self._name(targets[i])} ({float(probs[i, targets[i]]):.2f}); map of the {what}"
            fig, _ = overlay_frames(clip, maps[i], boxes[i], self.max_frames, self.mean, self.std, layout=lay, title=title)
            log_figure(trainer, f"{self.prefix}clip_{i}", fig, step)
            del fig
        self.last = {"clips": clips_cpu, "maps": maps, "boxes": boxes, "targets": targets, "predictions": pred.cpu(),
                     "confidence": conf.cpu()}
        gt = [b for _, _, b in items]
        if self.boxes_key is not None and all(b is not None for b in gt):
            gtb = torch.stack(gt)
            scores = {f"{self.prefix}pointing_game": pointing_game(maps, gtb, self.tolerance_px),
                      f"{self.prefix}energy_pointing_game": energy_pointing_game(maps, gtb)}
            self.last.update(scores)
            for logger in loggers_of(trainer):
                logger.log_metrics(scores, step=step)
