"""A tiny 3D CNN for the demo and the explanation tests (input ``(N, 3, T, H, W)``)."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

__all__ = ["TinyVideoNet", "LitVideoClassifier"]


class TinyVideoNet(nn.Module):
    """Three 3x3x3 conv blocks (spatial stride 2 in the last two, no temporal stride, so the last
    block keeps every frame: per-frame maps are natural), global average pooling, a linear head.
    ``block3`` is the usual Grad-CAM target; its cells are 4x4 input pixels."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv3d(3, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(inplace=True))
        self.block2 = nn.Sequential(nn.Conv3d(width, 2 * width, 3, stride=(1, 2, 2), padding=1),
                                    nn.BatchNorm3d(2 * width), nn.ReLU(inplace=True))
        self.block3 = nn.Sequential(nn.Conv3d(2 * width, 2 * width, 3, stride=(1, 2, 2), padding=1),
                                    nn.BatchNorm3d(2 * width), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, num_classes)`` of clips ``(N, 3, T, H, W)``."""
        x = self.block3(self.block2(self.block1(x)))
        return self.head(torch.flatten(self.pool(x), 1))


class LitVideoClassifier(pl.LightningModule):
    """A LightningModule around a clip classifier for :class:`~video_metrics.data.MovingObjectClips`
    batches (``clip``, ``target``, ``video_id``, ``clip_id``). ``validation_step``/``test_step``
    return the dict :class:`~video_metrics.callbacks.VideoMetricsCallback` reads."""

    def __init__(self, net: nn.Module, lr: float = 3e-3, task: str = "multiclass") -> None:
        super().__init__()
        self.net, self.lr, self.task = net, lr, task

    def forward(self, x: Tensor) -> Tensor:
        """The network's logits."""
        return self.net(x)

    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.task == "multiclass":
            return nn.functional.cross_entropy(logits, target)
        return nn.functional.binary_cross_entropy_with_logits(logits, target.float())

    def training_step(self, batch, batch_idx):
        """Cross-entropy of the batch."""
        loss = self._loss(self(batch["clip"]), batch["target"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["clip"].shape[0])
        return loss

    def _eval(self, batch):
        logits = self(batch["clip"])
        return {"logits": logits, "target": batch["target"], "video_ids": batch["video_id"],
                "clip_ids": batch["clip_id"]}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        """Logits, targets and ids for :class:`~video_metrics.callbacks.VideoMetricsCallback`."""
        return self._eval(batch)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        """As :meth:`validation_step`."""
        return self._eval(batch)

    def configure_optimizers(self):
        """Adam with a cosine learning-rate schedule over the epochs."""
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        epochs = max(int(getattr(self.trainer, "max_epochs", None) or 1), 1) if self._trainer is not None else 1
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)}
