"""Label-based metrics: top-k accuracy, precision/recall/F1, balanced accuracy, confusion matrix."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..functional.classification import (
    balanced_accuracy_from_counts,
    balanced_layout,
    confusion_counts,
    confusion_layout,
    argmax_lowest,
    label_counts,
    normalize_confusion,
    prf_layout,
    prf_value,
    top_confusions,
    top_k_counts,
    top_k_layout,
    top_k_value,
)
from .inputs import ScoresMetric

__all__ = ["TopKAccuracy", "PrecisionRecallF1", "Precision", "Recall", "F1Score", "BalancedAccuracy", "ConfusionMatrix"]


class TopKAccuracy(ScoresMetric):
    """Top-k accuracy for multiclass video classification.

    A sample is a hit when its target is among the ``k`` highest scores, ties between class scores
    broken towards the lower class index (so a tie never counts as a hit for free, unlike
    TensorFlow's ``in_top_k``). ``average="micro"`` (default) is the fraction of hits over all
    samples; ``"macro"`` is the mean per-class top-k recall over the classes present in the
    targets (classes with no sample are left out, not counted as 0). Scores may be logits or
    probabilities: top-k does not depend on which. Rows whose target equals ``ignore_index`` are
    skipped. ``k`` must be at most ``num_classes`` (a larger ``k`` would count every row as a hit).

    ``task="binary"`` (scores ``(N,)``): the accuracy of predicting 1 when ``p > 0.5`` (``k=1``
    only). ``task="multilabel"`` is refused: "top-k" has no single definition there; use
    :class:`MeanAveragePrecision` (ranking) or :class:`PrecisionRecallF1` (thresholded labels).

    Matches ``sklearn.metrics.top_k_accuracy_score`` (micro) and ``balanced_accuracy_score`` of the
    top-1 prediction (macro, k = 1).

    >>> import torch
    >>> from video_metrics import TopKAccuracy
    >>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
    >>> target = torch.tensor([0, 2, 1, 1])
    >>> metric = TopKAccuracy(num_classes=3)
    >>> metric.update(scores[:2], target[:2])
    >>> metric.update(scores[2:], target[2:])
    >>> metric.compute()
    tensor(0.7500, dtype=torch.float64)
    """

    binary_layout = "two_class"
    uses_probabilities = False
    tasks = ("multiclass", "binary")

    def __init__(self, num_classes: Optional[int] = None, k: int = 1, average: str = "micro",
                 ignore_index: Optional[int] = None, task: str = "multiclass", input: str = "logits",
                 **kwargs: Any) -> None:
        top_k_layout(num_classes, k, average, ignore_index, task, input)
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.k, self.average = k, average
        self.add_sum_state("hits", torch.zeros(self._c, dtype=torch.long))
        self.add_sum_state("support", torch.zeros(self._c, dtype=torch.long))

    def update(self, scores: Tensor, target: Tensor) -> None:
        """Add a batch: free checks raise at once; rows with bad values are counted and left out (no host sync)."""
        s, t, valid, counts = self._prepare(scores, target)
        hits, support = top_k_counts(s, t, valid, self.k, self._c)
        self.hits += hits
        self.support += support
        self._count_rows(*counts)

    def compute(self) -> Tensor:
        """Top-k accuracy of every valid row so far, synced (float64)."""
        self._check_rows()
        return top_k_value(self.hits, self.support, self.average)


class _ClassCounts(ScoresMetric):
    """Per-class tp / predicted / support counts from the top-1 prediction (multiclass) or from
    thresholded probabilities (multilabel: ``p > threshold``)."""

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", threshold: float = 0.5,
                 input: str = "logits", ignore_index: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.threshold = float(threshold)
        self.add_sum_state("counts", torch.zeros(3, self._c, dtype=torch.long))

    def _state_class(self) -> type:
        # precision, recall, F1 and balanced accuracy keep the same counts (binary: two layouts)
        return type(self) if self.task == "binary" and self.binary_layout == "two_class" else _ClassCounts

    @property
    def uses_probabilities(self) -> bool:  # multiclass predictions are argmaxes: logits or probabilities alike
        return getattr(self, "_task", self.task) != "multiclass"

    def update(self, scores: Tensor, target: Tensor) -> None:
        s, t, valid, counts = self._prepare(scores, target)
        self.counts += label_counts(s, t, valid, self._task, self.input, self.threshold, self._c)
        self._count_rows(*counts)


class PrecisionRecallF1(_ClassCounts):
    """Precision, recall and F-beta as one dict ``{"precision", "recall", "f1"}`` for ``log_dict``
    (:class:`Precision`, :class:`Recall` and :class:`F1Score` return each as a tensor).

    Multiclass: from the top-1 prediction (ties to the lower class index). Multilabel and binary:
    a label is predicted when its probability is **strictly above** ``threshold``; binary is
    scikit-learn's ``average="binary"`` (the positive class). ``beta`` weighs recall ``beta``
    times as much as precision (``"f1"`` holds F-beta; 1 by default). ``zero_division`` (0, 1 or
    NaN) is the value where a denominator is 0, as scikit-learn; NaN values are left out of the
    macro/weighted mean. ``average``:

    * ``"macro"``: unweighted mean over classes; as sklearn, the classes are those present in
      the targets or the predictions for multiclass input, and all classes for multilabel input;
    * ``"weighted"``: the same mean weighted by support;
    * ``"micro"``: from counts pooled over classes (for multiclass, equal to accuracy);
    * ``"none"``: per-class vectors of length ``num_classes``.

    >>> import torch
    >>> from video_metrics import PrecisionRecallF1
    >>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
    >>> metric = PrecisionRecallF1(num_classes=3)
    >>> metric.update(scores, torch.tensor([0, 2, 1, 1]))
    >>> {k: round(float(v), 4) for k, v in metric.compute().items()}
    {'precision': 0.8333, 'recall': 0.8333, 'f1': 0.7778}
    """

    #: options that only change compute(): metrics differing in them share state in a MetricCollection
    _compute_options = ("average", "beta", "zero_division")

    def __init__(self, num_classes: Optional[int] = None, task: str = "multiclass", average: str = "macro",
                 threshold: float = 0.5, input: str = "logits", ignore_index: Optional[int] = None, beta: float = 1.0,
                 zero_division: float = 0.0, **kwargs: Any) -> None:
        prf_layout(num_classes, task, average, threshold, input, ignore_index, beta, zero_division)
        super().__init__(num_classes, task=task, threshold=threshold, input=input, ignore_index=ignore_index, **kwargs)
        self.average, self.beta, self.zero_division = average, float(beta), float(zero_division)

    def _values(self) -> Dict[str, Tensor]:
        self._check_rows()
        return prf_value(self.counts, self._task, self.average, self.beta, self.zero_division)

    def compute(self) -> Dict[str, Tensor]:
        """``{"precision", "recall", "f1"}`` of every valid row so far, synced (float64)."""
        return self._values()


class Precision(PrecisionRecallF1):
    """Precision as a tensor (see :class:`PrecisionRecallF1` for the options). Works with
    ``self.log("val/precision", metric)``, ``BootStrapper`` and, with ``average="none"``,
    ``ClasswiseWrapper``; in a ``MetricCollection`` it shares its counts with :class:`Recall`,
    :class:`F1Score` and :class:`PrecisionRecallF1` of the same task, classes, threshold and input.

    >>> import torch
    >>> from video_metrics import Precision
    >>> metric = Precision(task="binary", input="probs")
    >>> metric.update(torch.tensor([0.9, 0.8, 0.2]), torch.tensor([1, 0, 0]))
    >>> metric.compute()
    tensor(0.5000, dtype=torch.float64)
    """

    _key = "precision"

    def compute(self) -> Tensor:
        """The one value of the class, synced (float64)."""
        return self._values()[self._key]


class Recall(Precision):
    """Recall as a tensor (see :class:`Precision`).

    >>> import torch
    >>> from video_metrics import Recall
    >>> recall = Recall(num_classes=3, average="none")
    >>> recall.update(torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]]),
    ...               torch.tensor([0, 2, 1, 1]))
    >>> recall.compute()
    tensor([1.0000, 0.5000, 1.0000], dtype=torch.float64)
    """

    _key = "recall"


class F1Score(Precision):
    """F-beta (``beta=1``: F1) as a tensor (see :class:`Precision`).

    >>> import torch
    >>> from video_metrics import F1Score
    >>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
    >>> metric = F1Score(num_classes=3, average="none")
    >>> metric.update(scores, torch.tensor([0, 2, 1, 1]))
    >>> metric.compute()
    tensor([0.6667, 0.6667, 1.0000], dtype=torch.float64)
    """

    _key = "f1"


class BalancedAccuracy(_ClassCounts):
    """Mean per-class recall of the top-1 prediction (mean class accuracy).

    ``predicted_absent="ignore"`` (default) is sklearn's ``balanced_accuracy_score``: the mean over
    classes present in the targets. ``"zero"`` is mmaction2's ``mean_class_accuracy``: the mean over
    classes present in the targets *or* the predictions, a class predicted but absent from the
    targets counting 0. Example: targets [2,2,2,3], predictions [2,2,2,4] give 0.5 and 1/3.

    >>> import torch
    >>> from video_metrics import BalancedAccuracy
    >>> scores = torch.eye(5)[[2, 2, 2, 4]]
    >>> metric = BalancedAccuracy(num_classes=5, input="probs")
    >>> metric.update(scores, torch.tensor([2, 2, 2, 3]))
    >>> metric.compute()
    tensor(0.5000, dtype=torch.float64)
    """

    binary_layout = "two_class"
    tasks = ("multiclass", "binary")
    _compute_options = ("predicted_absent",)

    def __init__(self, num_classes: Optional[int] = None, predicted_absent: str = "ignore",
                 ignore_index: Optional[int] = None, task: str = "multiclass", input: str = "logits",
                 **kwargs: Any) -> None:
        balanced_layout(num_classes, predicted_absent, ignore_index, task, input)
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.predicted_absent = predicted_absent

    def compute(self) -> Tensor:
        """Balanced accuracy of every valid row so far, synced (float64)."""
        self._check_rows()
        return balanced_accuracy_from_counts(self.counts[0], self.counts[1], self.counts[2], self.predicted_absent)


class ConfusionMatrix(ScoresMetric):
    """(C, C) confusion matrix of the top-1 prediction: rows are true classes, columns predicted.

    int64 counts with ``normalize=None``; otherwise float64 normalised over true classes (rows,
    ``"true"``), predicted classes (columns, ``"pred"``) or everything (``"all"``), with 0 where a
    row or column is empty (as sklearn). ``top_confusions(n)`` lists the ``n`` largest
    off-diagonal cells, for datasets with hundreds of classes.

    >>> import torch
    >>> from video_metrics import ConfusionMatrix
    >>> scores = torch.tensor([[2.0, 0.5, 0.1], [0.2, 0.1, 1.5], [0.3, 2.2, 0.4], [1.1, 0.9, 0.2]])
    >>> metric = ConfusionMatrix(num_classes=3)
    >>> metric.update(scores, torch.tensor([0, 2, 1, 1]))
    >>> metric.compute()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [0, 0, 1]])
    >>> metric.top_confusions(2)
    [(1, 0, 1)]
    """

    higher_is_better = None
    binary_layout = "two_class"
    uses_probabilities = False
    tasks = ("multiclass", "binary")

    def __init__(self, num_classes: Optional[int] = None, normalize: Optional[str] = None,
                 ignore_index: Optional[int] = None, task: str = "multiclass", input: str = "logits",
                 **kwargs: Any) -> None:
        confusion_layout(num_classes, normalize, ignore_index, task, input)
        super().__init__(num_classes, task=task, input=input, ignore_index=ignore_index, **kwargs)
        self.normalize = normalize
        self.add_sum_state("confmat", torch.zeros(self._c, self._c, dtype=torch.long))

    def update(self, scores: Tensor, target: Tensor) -> None:
        """Add a batch's top-1 predictions to the counts (no host sync)."""
        s, t, valid, counts = self._prepare(scores, target)
        self.confmat += confusion_counts(argmax_lowest(s), t, valid, self._c)
        self._count_rows(*counts)

    def compute(self) -> Tensor:
        """The synced matrix (int64 counts, or float64 when normalised)."""
        self._check_rows()
        return normalize_confusion(self.confmat, self.normalize)

    plot_upper_bound = None

    def plot(self, val: Optional[Tensor] = None, ax: Any = None, labels: Optional[List[str]] = None) -> Tuple[Any, Any]:
        """The matrix as a heatmap (rows true, columns predicted) with class names (``labels``),
        row-normalised, cell values up to 20 classes; ``(fig, ax)`` as torchmetrics."""
        from .draw import draw_confusion, figure_and_axes

        cm = self.synced(lambda: self.confmat.clone()) if val is None else val
        size = min(14.0, 3.0 + 0.22 * cm.shape[0])
        fig, ax = figure_and_axes(ax, size + 1.5, size)
        draw_confusion(ax, cm, labels)
        ax.set_title(f"Confusion matrix (row-normalised, {int(cm.sum())} samples)")
        return fig, ax

    def top_confusions(self, n: int = 10) -> List[Tuple[int, int, int]]:
        """The ``n`` largest off-diagonal cells as ``(true, predicted, count)``, count > 0,
        largest first, ties in row-major order."""
        cm = self.synced(lambda: self.confmat.clone())
        return top_confusions(cm, n)
