"""Label-based metrics: top-k accuracy, precision/recall/F1, balanced accuracy, confusion matrix."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..functional._checks import check_choice
from ..functional.classification import (
    argmax_lowest,
    balanced_accuracy,
    confusion_counts,
    multilabel_counts,
    precision_recall_f1,
    probabilities,
    safe_div,
    scatter_count,
    target_rank,
)
from ._inputs import ScoresMetric

__all__ = ["TopKAccuracy", "PrecisionRecallF1", "BalancedAccuracy", "ConfusionMatrix"]


class TopKAccuracy(ScoresMetric):
    """Top-k accuracy for multiclass video classification.

    A sample is a hit when its target is among the ``k`` highest scores, ties between class scores
    broken towards the lower class index (so a tie never counts as a hit for free, unlike
    TensorFlow's ``in_top_k``). ``average="micro"`` (default) is the fraction of hits over all
    samples; ``"macro"`` is the mean per-class top-k recall over the classes present in the
    targets (classes with no sample are left out, not counted as 0). Scores may be logits or
    probabilities: top-k does not depend on which. Rows whose target equals ``ignore_index`` are
    skipped.

    Matches ``sklearn.metrics.top_k_accuracy_score`` (micro) and ``balanced_accuracy_score`` of the
    top-1 prediction (macro, k = 1).
    """

    def __init__(self, num_classes: int, k: int = 1, average: str = "micro", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task="multiclass", input="logits", ignore_index=ignore_index, **kwargs)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int, got {k!r}")
        check_choice("average", average, ("micro", "macro"))
        self.k = k
        self.average = average
        self.add_sum_state("hits", torch.zeros(num_classes, dtype=torch.long))
        self.add_sum_state("support", torch.zeros(num_classes, dtype=torch.long))

    def _score_rule(self) -> str:
        return "NaN or inf"

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        hit = (target_rank(s, t) < self.k) & valid
        self.hits += scatter_count(t, hit, self.num_classes)
        self.support += scatter_count(t, valid, self.num_classes)
        self._count_rows(*counts)

    def compute(self) -> Tensor:
        self._check_rows()
        if self.average == "micro":
            return safe_div(self.hits.sum(), self.support.sum())
        present = self.support > 0
        return safe_div(self.hits, self.support)[present].mean()


class _ClassCounts(ScoresMetric):
    """Per-class tp / predicted / support counts from the top-1 prediction (multiclass) or from
    thresholded probabilities (multilabel: ``p > threshold``)."""

    def __init__(self, num_classes: int, task: str = "multiclass", threshold: float = 0.5, input: str = "logits",
                 ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        if not (0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"`threshold` must be a probability in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self.add_sum_state("counts", torch.zeros(3, num_classes, dtype=torch.long))

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        c = self.num_classes
        if self.task == "multiclass":
            pred = argmax_lowest(s)
            tp = scatter_count(t, valid & (pred == t), c)
            pc = scatter_count(pred, valid, c)
            su = scatter_count(t, valid, c)
            self.counts += torch.stack([tp, pc, su])
        else:
            pred = probabilities(s, self.task, self.input) > self.threshold
            tp, fp, fn = multilabel_counts(pred, t, valid)
            self.counts += torch.stack([tp, tp + fp, tp + fn])
        self._count_rows(*counts)

    def _tp_pred_support(self) -> Tuple[Tensor, Tensor, Tensor]:
        return self.counts[0], self.counts[1], self.counts[2]


class PrecisionRecallF1(_ClassCounts):
    """Precision, recall and F1 as one dict ``{"precision", "recall", "f1"}`` for ``log_dict``.

    Multiclass: from the top-1 prediction (ties to the lower class index). Multilabel: a label is
    predicted when its probability is **strictly above** ``threshold``. Zero division gives 0
    (sklearn's ``zero_division=0``). ``average``:

    * ``"macro"``: unweighted mean over classes; as sklearn, the classes are those present in
      the targets or the predictions for multiclass input, and all classes for multilabel input;
    * ``"weighted"``: the same mean weighted by support;
    * ``"micro"``: from counts pooled over classes (for multiclass, equal to accuracy);
    * ``"none"``: per-class vectors of length ``num_classes``.
    """

    def __init__(self, num_classes: int, task: str = "multiclass", average: str = "macro", threshold: float = 0.5,
                 input: str = "logits", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        check_choice("average", average, ("macro", "micro", "weighted", "none"))
        super().__init__(num_classes, task=task, threshold=threshold, input=input, ignore_index=ignore_index, **kwargs)
        self.average = average

    def compute(self) -> Dict[str, Tensor]:
        self._check_rows()
        tp, pc, su = self._tp_pred_support()
        labels = (su > 0) | (pc > 0) if self.task == "multiclass" else None
        return precision_recall_f1(tp, pc, su, self.average, labels)


class BalancedAccuracy(_ClassCounts):
    """Mean per-class recall of the top-1 prediction (mean class accuracy).

    ``predicted_absent="ignore"`` (default) is sklearn's ``balanced_accuracy_score``: the mean over
    classes present in the targets. ``"zero"`` is mmaction2's ``mean_class_accuracy``: the mean over
    classes present in the targets *or* the predictions, a class predicted but absent from the
    targets counting 0. Example: targets [2,2,2,3], predictions [2,2,2,4] give 0.5 and 1/3.
    """

    def __init__(self, num_classes: int, predicted_absent: str = "ignore", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        check_choice("predicted_absent", predicted_absent, ("ignore", "zero"))
        super().__init__(num_classes, task="multiclass", ignore_index=ignore_index, **kwargs)
        self.predicted_absent = predicted_absent

    def compute(self) -> Tensor:
        self._check_rows()
        tp, pc, su = self._tp_pred_support()
        return balanced_accuracy(tp, pc, su, self.predicted_absent)


class ConfusionMatrix(ScoresMetric):
    """(C, C) confusion matrix of the top-1 prediction: rows are true classes, columns predicted.

    int64 counts with ``normalize=None``; otherwise float64 normalised over true classes (rows,
    ``"true"``), predicted classes (columns, ``"pred"``) or everything (``"all"``), with 0 where a
    row or column is empty (as sklearn). ``top_confusions(n)`` lists the ``n`` largest
    off-diagonal cells, for datasets with hundreds of classes.
    """

    higher_is_better = None

    def __init__(self, num_classes: int, normalize: Optional[str] = None, ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task="multiclass", ignore_index=ignore_index, **kwargs)
        check_choice("normalize", normalize, (None, "true", "pred", "all"))
        self.normalize = normalize
        self.add_sum_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long))

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        self.confmat += confusion_counts(argmax_lowest(s), t, valid, self.num_classes)
        self._count_rows(*counts)

    def compute(self) -> Tensor:
        self._check_rows()
        return normalize_confusion(self.confmat, self.normalize)

    def top_confusions(self, n: int = 10) -> List[Tuple[int, int, int]]:
        """The ``n`` largest off-diagonal cells as ``(true, predicted, count)``, count > 0,
        largest first, ties in row-major order."""
        cm = self._synced(lambda: self.confmat.clone())
        return top_confusions(cm, n)


def normalize_confusion(cm: Tensor, normalize: Optional[str]) -> Tensor:
    if normalize is None:
        return cm.clone()
    if normalize == "true":
        return safe_div(cm, cm.sum(1, keepdim=True).expand_as(cm))
    if normalize == "pred":
        return safe_div(cm, cm.sum(0, keepdim=True).expand_as(cm))
    return safe_div(cm, cm.sum().expand_as(cm))


def top_confusions(cm: Tensor, n: int) -> List[Tuple[int, int, int]]:
    c = cm.shape[0]
    off = cm.clone()
    off.fill_diagonal_(0)
    flat = off.reshape(-1)
    k = min(int(n), flat.numel())
    # stable: among equal counts, row-major order
    order = torch.argsort(-flat, stable=True)[:k]
    out = []
    for idx, cnt in zip(order.tolist(), flat[order].tolist()):
        if cnt <= 0:
            break
        out.append((idx // c, idx % c, int(cnt)))
    return out
