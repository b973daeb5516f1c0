"""Free (shape/dtype) argument checks shared by kernels and metric classes.

Everything here looks only at ``.shape``, ``.dtype`` and ``.device``: no check reads tensor
values, so none of them synchronises a GPU with the host. Value checks (labels out of range,
non-finite scores) are counted on the device by the metric classes and raised at ``compute()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

TASKS = ("multiclass", "multilabel", "binary")
INPUTS = ("logits", "probs")


def check_choice(name: str, value, choices) -> None:
    """Raise a ``ValueError`` naming the argument when ``value`` is not one of ``choices``.

    >>> check_choice("average", "mean", ("macro", "micro"))
    Traceback (most recent call last):
    ...
    ValueError: `average` must be one of ('macro', 'micro'), got 'mean'
    """
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}")


def check_probability(name: str, value) -> float:
    """A number in [0, 1] (e.g. a decision threshold), as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_binary(scores, target, name: str = "scores") -> None:
    """task='binary': ``scores`` (N,) floating, ``target`` (N,) integer or bool in {0, 1}."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor (fp32, fp16, bf16 or fp64), got {scores.dtype}")
    if scores.ndim != 1:
        raise ValueError(f"`{name}` must have shape (N,) for task='binary' (one score of the positive class per "
                         f"row), got {tuple(scores.shape)}")
    if not isinstance(target, Tensor):
        raise TypeError(f"`target` must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"`target` must be an integer or bool tensor of 0/1 for task='binary', got {target.dtype}")
    if target.shape != scores.shape:
        raise ValueError(f"`target` must have shape (N,) = ({scores.shape[0]},) for task='binary', "
                         f"got {tuple(target.shape)}")
    if target.device != scores.device:
        raise ValueError(f"`target` is on {target.device} but `{name}` is on {scores.device}")


def check_num_classes(num_classes, task: str = "multiclass") -> int:
    """``num_classes`` as an int; for ``task="binary"`` it may be omitted (None) and is 2."""
    if task == "binary":
        if num_classes not in (None, 1, 2) or isinstance(num_classes, bool):
            raise ValueError(f"`num_classes` must be None (or 2) for task='binary', got {num_classes!r}")
        return 2
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
    return num_classes


def check_scores(scores, num_classes: int, name: str = "scores") -> None:
    """``scores`` must be a floating tensor of shape ``(N, num_classes)``."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor (fp32, fp16, bf16 or fp64), got {scores.dtype}")
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(
            f"`{name}` must have shape (N, num_classes={num_classes}), got {tuple(scores.shape)}"
        )


def check_target(target, scores: Tensor, task: str, name: str = "target") -> None:
    """``target`` must be ``(N,)`` class indices (multiclass) or an ``(N, C)`` {0, 1} tensor (multilabel), on the scores' device."""
    if not isinstance(target, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(target).__name__}")
    n, c = scores.shape
    if task == "multiclass":
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            raise TypeError(f"`{name}` must hold integer class indices for task='multiclass', got {target.dtype}")
        if target.shape != (n,):
            raise ValueError(
                f"`{name}` must have shape (N,) = ({n},) class indices for task='multiclass', got {tuple(target.shape)}"
            )
    else:
        if target.is_complex():
            raise TypeError(f"`{name}` must be a {{0,1}} tensor for task='multilabel', got {target.dtype}")
        if target.shape != (n, c):
            raise ValueError(
                f"`{name}` must have shape (N, num_classes) = ({n}, {c}) with values in {{0, 1}} for "
                f"task='multilabel', got {tuple(target.shape)}"
            )
    if target.device != scores.device:
        raise ValueError(f"`{name}` is on {target.device} but `scores` is on {scores.device}")


def check_ids(ids: Optional[Tensor], n: int, device, name: str) -> None:
    """Video or clip ids: None, or an integer tensor of shape ``(N,)`` on the scores' device."""
    if ids is None:
        return
    if not isinstance(ids, Tensor):
        raise TypeError(f"`{name}` must be an int64 torch.Tensor of shape (N,), got {type(ids).__name__}")
    if ids.is_floating_point() or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"`{name}` must be an integer tensor (int64), got {ids.dtype}")
    if ids.shape != (n,):
        raise ValueError(f"`{name}` must have shape (N,) = ({n},), got {tuple(ids.shape)}")
    if ids.device != device:
        raise ValueError(f"`{name}` is on {ids.device} but `scores` is on {device}")


def check_device(scores: Tensor, owner) -> None:
    """The batch must be on the metric's device (a clear error instead of a failure deep inside)."""
    if scores.device != owner.device:
        raise ValueError(
            f"`scores` is on {scores.device} but {type(owner).__name__} is on {owner.device}; "
            f"move the metric with .to({str(scores.device)!r})"
        )


class NoDataError(ValueError):
    """No valid row on any process: ``compute()`` (or a functional metric) has nothing to compute.

    >>> import torch
    >>> from video_metrics import TopKAccuracy
    >>> TopKAccuracy(num_classes=3).compute()
    Traceback (most recent call last):
    ...
    video_metrics.functional.checks.NoDataError: TopKAccuracy.compute() was called with no valid data (no rows on any process). Call update() with at least one valid row first.
    """


@dataclass(frozen=True)
class Layout:
    """How a metric reads ``(scores, target)``: the options every metric class and its functional
    twin share (``task``, ``num_classes``, ``input``, ``ignore_index``) and the layout the kernels
    see. ``task="binary"`` (scores ``(N,)``) is read either as one label (``binary="one_label"``:
    ranking, calibration, precision/recall/F1 of the positive class) or as two classes with
    logits ``[0, x]`` / probabilities ``[1 - p, p]`` (``"two_class"``: accuracy, balanced accuracy,
    confusion matrix; the prediction is 1 exactly when ``p > 0.5``).

    >>> Layout.of(None, "binary", binary="two_class").columns
    2
    >>> Layout.of(5, "multiclass").rows_task
    'multiclass'
    """

    task: str
    num_classes: int
    input: str = "logits"
    ignore_index: Optional[int] = None
    binary: str = "one_label"

    @classmethod
    def of(cls, num_classes, task: str = "multiclass", input: str = "logits", ignore_index=None,
           binary: str = "one_label", tasks: Tuple[str, ...] = TASKS) -> "Layout":
        """Check the options (a clear error naming the argument) and build the layout."""
        check_choice("task", task, tasks)
        check_choice("input", input, INPUTS)
        num_classes = check_num_classes(num_classes, task)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"`ignore_index` must be None or an int, got {ignore_index!r}")
        if ignore_index is not None and task != "multiclass":
            raise ValueError(f"`ignore_index` is only supported for task='multiclass', got task={task!r}")
        return cls(task, num_classes, input, ignore_index, binary)

    @property
    def rows_task(self) -> str:
        """The task the kernels see: binary is a one-label multilabel or a two-class multiclass task."""
        if self.task == "binary":
            return "multiclass" if self.binary == "two_class" else "multilabel"
        return self.task

    @property
    def columns(self) -> int:
        """Columns of the kernels' score rows (binary: 1 label or 2 classes)."""
        if self.task == "binary":
            return 2 if self.binary == "two_class" else 1
        return self.num_classes

    def batch(self, scores, target) -> Tuple[Tensor, Tensor]:
        """Free checks of a batch (shape, dtype, device; raised at once), then the batch in the
        kernels' layout."""
        if self.task != "binary":
            check_scores(scores, self.num_classes)
            check_target(target, scores, self.task)
            return scores, target
        check_binary(scores, target)
        if self.binary == "one_label":
            return scores[:, None], target[:, None]
        first = torch.zeros_like(scores) if self.input == "logits" else 1 - scores
        return torch.stack([first, scores], 1), target.long()

    def rules(self) -> Tuple[str, str]:
        """What a valid target and valid scores are, as the errors say."""
        return value_rules(self.task, self.num_classes, self.input)


def value_rules(task: str, num_classes, input: str) -> Tuple[str, str]:
    """``(target rule, scores rule)`` of :func:`check_row_counts`."""
    target = f"{task} targets must be 0 or 1" if task != "multiclass" else f"class indices must be in [0, {num_classes})"
    return target, ("NaN, inf, or a probability outside [0, 1]" if input == "probs" else "NaN or inf")


def check_row_counts(owner: str, rules: Tuple[str, str], bad_target: int, bad_score: int, n_valid: int,
                     functional: bool = False) -> None:
    """Raise for rows with bad values (naming the rule they broke) or for no valid row at all:
    the one message of every metric class (at ``compute()``, ``functional=False``) and of every
    functional metric. ``rules``: what a valid target and valid scores are (:meth:`Layout.rules`)."""
    if bad_target or bad_score:
        rule_t, rule_s = rules
        parts = []
        if bad_target:
            parts.append(f"{bad_target} row(s) with a `target` outside the valid labels ({rule_t})")
        if bad_score:
            parts.append(f"{bad_score} row(s) with invalid `scores` ({rule_s})")
        where = "passed" if functional else "passed to update(); they were left out"
        end = "Fix the inputs." if functional else "Fix the inputs, or call reset()."
        raise ValueError(f"{owner}: " + " and ".join(parts) + f" were {where} ({n_valid} valid row(s) kept). {end}")
    if n_valid == 0:
        if functional:
            raise NoDataError(f"{owner}: no valid data (no rows, or every row ignored)")
        raise NoDataError(f"{owner}.compute() was called with no valid data (no rows on any process). "
                          "Call update() with at least one valid row first.")


def probabilities_warning(owner: str, n_rows: int, task: str) -> str:
    """The warning when every valid row looks like probabilities although ``input="logits"``."""
    return (f"{owner}: every one of the {n_rows} valid row(s) lies in [0, 1]"
            + (" and sums to 1" if task == "multiclass" else "")
            + ", which looks like probabilities, but input='logits' (the default) applies a softmax/sigmoid to "
            "them. If these are probabilities, pass input=\"probs\".")
