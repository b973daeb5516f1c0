"""YouTube-8M's official evaluation (GAP@20, Hit@1, PERR, mAP) at full size, exact, from each
video's top predictions (definitions and tie rule: :mod:`video_metrics.functional.youtube8m`).

The state is what the official quantities need, nothing more: each video's ``top_k`` ranked
(score, class, hit), its PERR (final at ``update()``), its first ``max_labels`` label ids (the
classes' positives, counted once per video after de-duplication) and its id. With the defaults
(3,862 classes, ``top_k=20``, fp32 scores) that is 20 × (4 + 2 + 1) + 32 × 2 + 8 + 8 + 1 = 221 bytes a
video: 221 MB for a million videos, against 15 GB for their fp32 scores.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from ..functional.aggregation import duplicate_pairs
from ..functional.checks import Layout, check_device, check_ids
from ..functional.youtube8m import TOP_K, VideoRows, check_top_k, listed_rows, summary, video_rows, youtube8m_value
from .base import VideoMetric

__all__ = ["YouTube8MMetrics"]


class YouTube8MMetrics(VideoMetric):
    """GAP@``top_k``, Hit@1, PERR and mAP as YouTube-8M's ``eval.py`` reports them, exact, in
    O(``top_k``) memory per video: ``update()`` takes each row's top predictions on the device (no
    host sync), rows with bad values are counted and raised at ``compute()``, the state travels in
    the one packed sync.

    * ``update(scores, target, video_ids=None)``: dense scores and multi-hot targets ``(N, C)``.
    * ``update_top_k(scores, classes, target, video_ids=None)``: only each video's listed
      predictions ``(N, K)`` (a submission; class -1 for none).
    * ``video_ids`` (int64 ``(N,)``, all batches or none): a video seen twice (a padding sampler's
      repeat, on any process) counts once; two different rows under one id are an error.
    * ``input="probs"`` (the official scripts' predictions) or ``"logits"`` (ranked as given, the
      sigmoid being monotone; every finite logit counts as a prediction above 0 for PERR).
    * ``max_labels``: the most labels a video may have (PERR ranks ``max(top_k, max_labels)``
      predictions a video; a video with more labels is refused at ``compute()``).
    * ``score_dtype``: the stored scores' dtype, float32 (exact for fp16, bf16 and fp32 scores);
      pass ``torch.float64`` to keep fp64 scores unrounded (fp64 batches with float32 storage warn
      once: rounding can tie scores that differ).

    ``compute()`` returns ``gap``, ``hit_at_1``, ``perr``, ``map`` and ``num_videos``;
    :meth:`per_class` the AP and positives of each class.

    >>> import torch
    >>> metric = YouTube8MMetrics(num_classes=3, top_k=2)
    >>> metric.update(torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.7]]), torch.tensor([[1, 0, 1], [0, 0, 1]]))
    >>> metric.update(torch.tensor([[0.6, 0.5, 0.1]]), torch.tensor([[0, 1, 0]]))
    >>> {k: round(float(v), 4) for k, v in metric.compute().items()}
    {'gap': 0.7333, 'hit_at_1': 0.3333, 'perr': 0.3333, 'map': 0.8333, 'num_videos': 3.0}
    """

    def __init__(self, num_classes: int = 3862, top_k: int = TOP_K, input: str = "probs", max_labels: int = 32,
                 score_dtype: torch.dtype = torch.float32, **kwargs: Any) -> None:
        layout = Layout.of(num_classes, "multilabel", input)
        check_top_k(top_k)
        if isinstance(max_labels, bool) or not isinstance(max_labels, int) or max_labels < 1:
            raise ValueError(f"`max_labels` must be a positive int, got {max_labels!r}")
        if score_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"`score_dtype` must be torch.float32 or torch.float64, got {score_dtype!r}")
        super().__init__(**kwargs)
        self._layout = layout
        self.num_classes, self.top_k, self.input, self.max_labels = num_classes, top_k, input, max_labels
        self.task = "multilabel"
        self.score_dtype = score_dtype
        k = min(top_k, num_classes)
        ids = torch.int16 if num_classes < 2**15 else torch.int32
        self._id_dtype = ids
        self.add_cat_state("top_scores", score_dtype, (k,))
        self.add_cat_state("top_classes", ids, (k,))
        self.add_cat_state("top_hits", torch.bool, (k,))
        self.add_cat_state("labels", ids, (max_labels,))
        self.add_cat_state("perr_rows", torch.float64, ())
        self.add_cat_state("valid", torch.bool, ())
        self.add_cat_state("video_ids", torch.long, ())
        self.add_sum_state("n_seen", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_with_ids", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_over_labels", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------------------- update
    def update(self, scores: Tensor, target: Tensor, video_ids: Optional[Tensor] = None) -> None:
        """Dense ``scores`` and multi-hot ``target`` ``(N, num_classes)``."""
        scores, target = self._layout.batch(scores, target)
        check_device(scores, self)
        check_ids(video_ids, scores.shape[0], scores.device, "video_ids")
        self._warn_fp64(scores)
        self._append(video_rows(scores, target, self.top_k, self.max_labels, self.input), video_ids)

    def update_top_k(self, scores: Tensor, classes: Tensor, target: Tensor, video_ids: Optional[Tensor] = None) -> None:
        """Each video's listed predictions only: ``scores`` (floating) and ``classes`` (integer, -1
        for no prediction) ``(N, K)``, in any order, and the multi-hot ``target`` ``(N,
        num_classes)``. A listed class outside ``[-1, num_classes)`` or listed twice makes the row
        bad (counted, raised at ``compute()``)."""
        if not isinstance(scores, Tensor) or not scores.is_floating_point() or scores.ndim != 2:
            raise TypeError(f"`scores` must be a floating tensor of shape (N, K), got "
                            f"{getattr(scores, 'dtype', type(scores).__name__)} {tuple(getattr(scores, 'shape', ()))}")
        if (not isinstance(classes, Tensor) or classes.is_floating_point() or classes.dtype == torch.bool
                or classes.shape != scores.shape):
            raise TypeError(f"`classes` must be an integer tensor of the shape of `scores` {tuple(scores.shape)}, got "
                            f"{getattr(classes, 'dtype', type(classes).__name__)} {tuple(getattr(classes, 'shape', ()))}")
        n = scores.shape[0]
        if not isinstance(target, Tensor) or target.shape != (n, self.num_classes) or target.is_complex():
            raise ValueError(f"`target` must be a multi-hot tensor of shape (N, num_classes) = ({n}, {self.num_classes}), "
                             f"got {tuple(getattr(target, 'shape', ()))}")
        for name, t in (("classes", classes), ("target", target)):
            if t.device != scores.device:
                raise ValueError(f"`{name}` is on {t.device} but `scores` is on {scores.device}")
        check_device(scores, self)
        check_ids(video_ids, n, scores.device, "video_ids")
        self._warn_fp64(scores)
        self._append(listed_rows(scores, classes, target, self.top_k, self.max_labels, self.input), video_ids)

    def _warn_fp64(self, scores: Tensor) -> None:
        if scores.dtype == torch.float64 and self.score_dtype != torch.float64 and not getattr(self, "_warned64", False):
            self._warned64 = True
            warnings.warn("YouTube8MMetrics: fp64 scores are stored as float32 (score_dtype); scores that differ only "
                          "below float32's precision then tie. Pass score_dtype=torch.float64 to keep them.",
                          UserWarning, stacklevel=3)

    def _append(self, rows: VideoRows, video_ids: Optional[Tensor]) -> None:
        over = (rows.num_labels > self.max_labels) & rows.valid
        for name, x in (("top_scores", rows.scores), ("top_classes", rows.classes), ("top_hits", rows.hits),
                        ("labels", rows.labels), ("perr_rows", rows.perr), ("valid", rows.valid & ~over)):
            self.append_rows(name, x)
        n = rows.valid.shape[0]
        self.n_seen += n
        if video_ids is not None:
            self.append_rows("video_ids", video_ids)
            self.n_with_ids += n
        self.n_over_labels += over.sum()
        self._count_rows(rows.valid & ~over, rows.bad_target, rows.bad_score)

    # ------------------------------------------------------------------------------ compute
    def _kept(self) -> Tuple[Tensor, int]:
        """``(indices of the rows that count, number of rows stored)``: the valid rows, the first of
        each video id (the same on every process after the sync)."""
        self._check_rows()
        over = int(self.n_over_labels)
        if over:
            raise ValueError(f"YouTube8MMetrics: {over} video(s) have more than max_labels={self.max_labels} labels; "
                             "their PERR needs that many ranked predictions. Pass a larger max_labels.")
        valid = self._cat("valid")
        seen, with_ids = int(self.n_seen), int(self.n_with_ids)
        idx = torch.nonzero(valid).squeeze(1)
        if with_ids == 0:
            return idx, valid.shape[0]
        if with_ids < seen:
            raise ValueError("`video_ids` were given for some batches only: pass them for every batch or for none")
        vid = self._cat("video_ids")[idx]
        first, dup, dup_first = duplicate_pairs(vid, torch.zeros_like(vid))
        if dup.numel():
            same = torch.ones(dup.numel(), dtype=torch.bool, device=vid.device)
            for name in ("top_scores", "top_classes", "top_hits", "labels"):
                x = self._cat(name)
                same &= (x[idx[dup]] == x[idx[dup_first]]).all(1)
            if not bool(same.all()):
                bad = int((~same).sum())
                raise ValueError(f"YouTube8MMetrics: {bad} row(s) repeat the video_id of another row with different "
                                 f"predictions or labels (first: video {int(vid[dup[~same]].min())}); a padding "
                                 "sampler repeats rows unchanged, so the ids are wrong")
        return torch.sort(idx[first]).values, valid.shape[0]

    def _evaluate(self) -> Dict[str, Tensor]:
        keep, stored = self._kept()
        all_kept = keep.numel() == stored
        pick = (lambda x: x) if all_kept else (lambda x: x[keep])
        positives = torch.zeros(self.num_classes + 1, dtype=torch.long, device=self.device)
        table = pick(self._cat("labels"))
        for lo in range(0, table.shape[0], 1 << 16):  # a block of videos at a time: no int64 copy of the table
            part = table[lo:lo + (1 << 16)].reshape(-1).long()
            positives.index_add_(0, torch.where(part >= 0, part, self.num_classes), torch.ones_like(part))
        positives = positives[:-1]
        del table
        return youtube8m_value(pick(self._cat("top_scores")), pick(self._cat("top_classes")),
                               pick(self._cat("top_hits")), pick(self._cat("perr_rows")), positives) | {"positives": positives}

    def compute(self) -> Dict[str, Tensor]:
        """``gap``, ``hit_at_1``, ``perr``, ``map``, ``num_videos`` (float64 scalars) over every process's
        videos, each video once."""
        return summary(self._evaluate())

    def results(self) -> Dict[str, Tensor]:
        """``compute()``'s keys and the per-class terms of ``map`` from one evaluation of the synced
        state: ``per_class_ap`` (C,) float64 (NaN for a class without positives) and ``positives``
        (C,) int64."""
        out = self.synced(self._evaluate)
        return summary(out) | {"per_class_ap": out["per_class_ap"], "positives": out["positives"]}

    def per_class(self) -> Dict[str, Tensor]:
        """``{"ap": (C,) float64 (NaN for a class without positives), "positives": (C,) int64}``,
        over the synced state, as ``compute()`` reads it (the per-class terms of ``map``)."""
        out = self.results()
        return {"ap": out["per_class_ap"], "positives": out["positives"]}
