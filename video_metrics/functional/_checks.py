"""Free (shape/dtype) argument checks shared by kernels and metric classes.

Everything here looks only at ``.shape``, ``.dtype`` and ``.device``: no check reads tensor
values, so none of them synchronises a GPU with the host. Value checks (labels out of range,
non-finite scores) are counted on the device by the metric classes and raised at ``compute()``.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

TASKS = ("multiclass", "multilabel", "binary")
INPUTS = ("logits", "probs")


def check_choice(name: str, value, choices) -> None:
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
    if not isinstance(scores, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor (fp32, fp16, bf16 or fp64), got {scores.dtype}")
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise ValueError(
            f"`{name}` must have shape (N, num_classes={num_classes}), got {tuple(scores.shape)}"
        )


def check_target(target, scores: Tensor, task: str, name: str = "target") -> None:
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
