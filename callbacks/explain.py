"""``ExplainCallback``: heatmap overlays (with proxy boxes) of a few validation clips, every N epochs,
as frame strips and animations, for any video classifier (:func:`video_metrics.explain.explain`)."""
from __future__ import annotations

import heapq
from typing import Any, Callable, List, Optional, Sequence, Union

from pytorch_lightning.utilities import rank_zero_info

import torch
from pytorch_lightning import Callback
from torch import Tensor, nn

from video_metrics.explain import (
    GradCAM,
    GradCAMPlusPlus,
    energy_pointing_game,
    explain,
    overlay_frames,
    pointing_game,
    saliency_to_boxes,
)
from video_metrics.explain.overlay import overlay_animation

from .figures import log_figure, log_video, loggers_of, scalar_step

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

    * ``method``: ``"auto"`` (attention rollout for Hugging Face VideoMAE / TimeSformer / ViViT /
      X-CLIP, Grad-CAM otherwise), ``"gradcam"``, ``"gradcam++"`` or ``"rollout"``, computed by
      :func:`~video_metrics.explain.explain` on the LightningModule. ``target_layer``: a module of
      the LightningModule or its dotted name (e.g. ``"model.block3"``); default: chosen by tracing
      the model (logged once as ``explain/layer``, with ``explain/method`` and ``explain/reading``,
      through the loggers' ``log_hyperparams``). ``weights`` (``"frame"``/``"clip"``), ``layout``
      (``None``: guessed, refused when ambiguous) and ``forward_fn`` as in ``explain``; ``reshape``
      (a :class:`~video_metrics.explain.TokenGrid`, with ``target_layer``) reads a token layer
      the caller knows.
    * ``select="fixed"``: the first ``num_clips`` clips seen (kept on the CPU once, the same clips
      every epoch, so the maps can be compared across epochs). ``"confident_errors"``: the
      ``num_clips`` most confident mistakes of the epoch (needs the step output's ``scores``/
      ``logits`` and ``target``, or ``extract``; reads each batch's confidences on rank zero); their
      map is of the true class.
    * Batches: ``clip_key`` (dict key or tuple index) holds the clips — a tensor, or a list of
      pathway tensors (SlowFast) — and ``target_key`` the labels; with ``boxes_key`` (``(N, T, 4)``
      or ``(N, K, T, 4)`` true boxes, as :class:`~video_metrics.data.MovingObjectClips` gives) the
      pointing game (tolerance ``tolerance_px``) and the energy pointing game are logged too.
    * Each explained clip is logged as a frame strip (``<prefix>clip_<i>``, through
      :func:`~video_metrics.callbacks.log_figure`) and, with ``animate=True``, as an animated
      overlay (``<prefix>clip_<i>/animation``, through :func:`~video_metrics.callbacks.log_video`:
      a video for W&B and for TensorBoard with ``moviepy``, a GIF file for the others).
    * Runs on global rank zero only, with the unwrapped module, every ``every_n_epochs`` epochs,
      never in the sanity check; works in ``fit`` (no_grad) and ``trainer.validate()``
      (inference mode: the clips are cloned and grad re-enabled locally).

    >>> from video_metrics.callbacks import ExplainCallback
    >>> callback = ExplainCallback(num_clips=2, select="confident_errors", clip_key="clip", class_names=["a", "b"])
    >>> callback.method, callback.num_clips, callback.select
    ('auto', 2, 'confident_errors')
    """

    def __init__(self, method: str = "auto", target_layer: Optional[Union[nn.Module, str]] = None,
                 num_clips: int = 4, select: str = "fixed", every_n_epochs: int = 1, layout: Optional[str] = None,
                 reshape=None, forward_fn: Optional[Callable] = None,
                 clip_key: Union[str, int] = "x", target_key: Union[str, int] = "target",
                 boxes_key: Optional[Union[str, int]] = None, class_names: Optional[Sequence[str]] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None, weights: str = "frame",
                 threshold: float = 0.2, max_frames: int = 8, tolerance_px: int = 0, prefix: str = "val/explain/",
                 extract: Optional[Callable[[Any, Any], dict]] = None, animate: bool = True, fps: float = 4.0) -> None:
        super().__init__()
        if method not in ("auto", "gradcam", "gradcam++", "rollout"):
            raise ValueError(f"`method` must be 'auto', 'gradcam', 'gradcam++' or 'rollout', got {method!r}")
        if select not in ("fixed", "confident_errors"):
            raise ValueError(f"`select` must be 'fixed' or 'confident_errors', got {select!r}")
        if not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"`num_clips` must be a positive int, got {num_clips!r}")
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"`every_n_epochs` must be a positive int, got {every_n_epochs!r}")
        if layout not in (None, "NCTHW", "NTCHW"):
            raise ValueError(f"`layout` must be 'NCTHW', 'NTCHW' or None (guess), got {layout!r}")
        if weights not in ("clip", "frame"):
            raise ValueError(f"`weights` must be 'clip' or 'frame', got {weights!r}")
        if reshape is not None and (target_layer is None or method not in ("gradcam", "gradcam++")):
            raise ValueError("`reshape` reads a token layer the caller names: pass target_layer= and method='gradcam' or "
                             "'gradcam++' (or leave both out: explain() finds the layer and its token layout)")
        self.method, self.target_layer, self.num_clips, self.select = method, target_layer, num_clips, select
        self.every_n_epochs, self.layout, self.reshape, self.forward_fn = every_n_epochs, layout, reshape, forward_fn
        self.clip_key, self.target_key, self.boxes_key = clip_key, target_key, boxes_key
        self.class_names = list(class_names) if class_names is not None else None
        self.mean, self.std, self.weights, self.threshold = mean, std, weights, threshold
        self.max_frames, self.tolerance_px, self.prefix, self.extract = max_frames, tolerance_px, prefix, extract
        self.animate, self.fps = animate, fps
        self._fixed: List[tuple] = []  # (clip, target, boxes) on CPU; clip: tensor or tuple of pathway tensors
        self._errors: List[tuple] = []  # heap of (confidence, counter, clip, target, boxes)
        self._counter = 0
        self._layer_logged = False
        #: the last explained batch: dict with clips, maps, boxes, targets, predictions (CPU), the Explanation
        self.last: Optional[dict] = None

    # ------------------------------------------------------------------ collecting clips
    def _due(self, trainer) -> bool:
        return (trainer.is_global_zero and not trainer.sanity_checking
                and trainer.current_epoch % self.every_n_epochs == 0)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        """Forget the previous epoch's confident errors (``select="confident_errors"`` picks this epoch's own)."""
        self._errors = []

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        """Keep the batch's pathway list before the step: SlowFast models (pytorchvideo, PySlowFast) write their
        features into the list they are given."""
        clips = _get(batch, self.clip_key)
        self._pathways = tuple(clips) if isinstance(clips, list) else None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """Keep candidate clips on rank 0: the first ``num_clips`` clips (``select="fixed"``), or the
        ``num_clips`` most confident wrong predictions of the epoch (``"confident_errors"``)."""
        if not trainer.is_global_zero or dataloader_idx != 0:
            return
        clips = _require(batch, self.clip_key, "clip_key")
        if isinstance(clips, list) and getattr(self, "_pathways", None) is not None:
            clips = self._pathways
        if isinstance(clips, (list, tuple)) and not all(isinstance(c, Tensor) for c in clips):
            raise TypeError(f"ExplainCallback: clip_key={self.clip_key!r} holds a {type(clips).__name__} that is not a "
                            "list of pathway tensors")
        count = clips[0].shape[0] if isinstance(clips, (list, tuple)) else clips.shape[0]
        target = _get(batch, self.target_key)
        boxes = _require(batch, self.boxes_key, "boxes_key") if self.boxes_key is not None else None
        if self.select == "fixed":
            need = self.num_clips - len(self._fixed)
            for i in range(min(need, count)):
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
            if isinstance(clips, (list, tuple)):
                c = tuple(p[i].detach().cpu().clone() for p in clips)
            else:
                c = clips[i].detach().cpu().clone()
            t = None if target is None else int(target[i]) if target[i].dim() == 0 else target[i].detach().cpu().clone()
            b = None if boxes is None else boxes[i].detach().cpu().clone()
        return c, t, b

    # ------------------------------------------------------------------ explaining
    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names is not None and 0 <= c < len(self.class_names) else str(c)

    def _explain(self, pl_module, x, tgt):
        if self.reshape is not None:
            cls = GradCAM if self.method == "gradcam" else GradCAMPlusPlus
            cam = cls(pl_module, self.target_layer, weights=self.weights, layout=self.layout, reshape=self.reshape,
                      forward_fn=self.forward_fn)
            maps = cam(x, tgt)
            return maps, None, cam.layer_name, cam.last_reading
        e = explain(pl_module, x, method=self.method, target=tgt, layer=self.target_layer, layout=self.layout,
                    weights=self.weights, forward_fn=self.forward_fn)
        return e.maps, e, e.layer, e.reading

    def _log_layer_once(self, trainer, method: str, layer: Optional[str], reading: str, reason: str) -> None:
        if self._layer_logged:
            return
        self._layer_logged = True
        params = {"explain/method": method, "explain/layer": layer if layer is not None else "(attention rollout)",
                  "explain/reading": reading}
        for logger in loggers_of(trainer):
            logger.log_hyperparams(params)
        rank_zero_info(f"ExplainCallback: {method} at layer {params['explain/layer']} ({reading}; {reason})")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        """Explain the kept clips and log their overlays (and animations, pointing-game scores) to every logger."""
        if not self._due(trainer):
            return
        items = self._fixed if self.select == "fixed" else [e[2] for e in sorted(self._errors, reverse=True)]
        if not items:
            return
        first = items[0][0]
        if isinstance(first, tuple):
            x = [torch.stack([c[k] for c, _, _ in items]).to(pl_module.device) for k in range(len(first))]
        else:
            x = torch.stack([c for c, _, _ in items]).to(pl_module.device)
        targets = [t for _, t, _ in items]
        tgt = None
        if self.select == "confident_errors" and all(isinstance(t, int) for t in targets):
            tgt = torch.tensor(targets, device=pl_module.device)
        maps, e, layer, reading = self._explain(pl_module, x, tgt)
        maps = maps.cpu()
        if e is not None:
            self._log_layer_once(trainer, e.method, layer, reading, e.reason)
            pred, conf = e.predicted.cpu(), e.confidence.cpu()
            layout = e.layout
        else:
            self._log_layer_once(trainer, self.method, layer, reading or "", "given")
            with torch.inference_mode(False), torch.no_grad():
                was = pl_module.training
                pl_module.eval()
                try:
                    out = self.forward_fn(x) if self.forward_fn is not None else pl_module(x)
                finally:
                    pl_module.train(was)
            probs = (out if isinstance(out, Tensor) else out.logits).float().softmax(1).cpu()
            conf, pred = probs.max(1)
            layout = self.layout or "NCTHW"
        boxes = saliency_to_boxes(maps, self.threshold)
        step = scalar_step(trainer)
        shown = x if isinstance(x, Tensor) else max(x, key=lambda p: p.shape[2] if layout == "NCTHW" else p.shape[1])
        clips_cpu = shown.cpu()
        lay = "CTHW" if layout == "NCTHW" else "TCHW"
        method = e.method if e is not None else self.method
        what = "predicted class" if tgt is None else "true class"
        for i in range(len(items)):
            p = int(pred[i])
            title = f"{method}: predicted {self._name(p)} ({float(conf[i]):.2f})"
            if isinstance(targets[i], int):
                title += f", true {self._name(targets[i])}"
                if method != "rollout":
                    title += f"; map of the {what}"
            fig, _ = overlay_frames(clips_cpu[i], maps[i], boxes[i], self.max_frames, self.mean, self.std, layout=lay,
                                    title=title)
            log_figure(trainer, f"{self.prefix}clip_{i}", fig, step)
            del fig
            if self.animate:
                frames = overlay_animation(clips_cpu[i], maps[i], boxes[i], self.mean, self.std, layout=lay)
                log_video(trainer, f"{self.prefix}clip_{i}/animation", frames, step, self.fps)
        self.last = {"clips": clips_cpu, "maps": maps, "boxes": boxes, "targets": targets, "predictions": pred,
                     "confidence": conf, "explanation": e, "layer": layer}
        gt = [b for _, _, b in items]
        if self.boxes_key is not None and all(b is not None for b in gt):
            gtb = torch.stack(gt)
            scores = {f"{self.prefix}pointing_game": pointing_game(maps, gtb, self.tolerance_px),
                      f"{self.prefix}energy_pointing_game": energy_pointing_game(maps, gtb)}
            self.last.update(scores)
            for logger in loggers_of(trainer):
                logger.log_metrics(scores, step=step)
