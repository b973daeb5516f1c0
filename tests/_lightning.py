"""A tiny LightningModule and clip data set for the callback tests (fast on CPU)."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

C = 5
D = 16


class Clips(Dataset):
    """``videos`` videos x ``clips`` clips of noisy class features; clip id = dataset index."""

    def __init__(self, videos: int = 23, clips: int = 3, seed: int = 0, task: str = "multiclass", noise: float = 2.0):
        rng = np.random.default_rng(seed)
        proto = rng.normal(size=(C, D)).astype(np.float32)
        if task == "multiclass":
            vt = rng.integers(0, C, size=videos)
            y = np.repeat(vt, clips)
            x = proto[y] + noise * rng.normal(size=(videos * clips, D)).astype(np.float32)
            self.target = torch.from_numpy(y).long()
        else:
            vt = (rng.random((videos, C)) < 0.35).astype(np.int64)
            y = np.repeat(vt, clips, axis=0)
            x = y.astype(np.float32) @ proto + noise * rng.normal(size=(videos * clips, D)).astype(np.float32)
            self.target = torch.from_numpy(y).long()
        self.x = torch.from_numpy(x)
        self.video = torch.from_numpy(np.repeat(np.arange(videos), clips)).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return {"x": self.x[i], "target": self.target[i], "video_id": self.video[i], "clip_id": torch.tensor(i)}


class TinyModule(pl.LightningModule):
    def __init__(self, task: str = "multiclass", lr: float = 0.05, val_sets=None, batch_size: int = 8):
        super().__init__()
        self.task, self.lr, self.batch_size = task, lr, batch_size
        self.net = torch.nn.Linear(D, C)
        self.train_set = Clips(40, 3, seed=1, task=task)
        self.val_sets = val_sets if val_sets is not None else [Clips(23, 3, seed=2, task=task)]

    def forward(self, x):
        return self.net(x)

    def _loss(self, logits, target):
        if self.task == "multiclass":
            return torch.nn.functional.cross_entropy(logits, target)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target.float())

    def training_step(self, batch, batch_idx):
        return self._loss(self(batch["x"]), batch["target"])

    def _eval_step(self, batch):
        logits = self(batch["x"])
        return {"logits": logits, "target": batch["target"], "video_ids": batch["video_id"], "clip_ids": batch["clip_id"]}

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        return self._eval_step(batch)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return self._eval_step(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        loaders = [DataLoader(v, batch_size=self.batch_size) for v in self.val_sets]
        return loaders[0] if len(loaders) == 1 else loaders

    def test_dataloader(self):
        return DataLoader(self.val_sets[0], batch_size=self.batch_size)


def reference(module: TinyModule, data: Clips, **suite_kwargs):
    """The suite on the module's outputs for a whole data set, in one process."""
    from video_metrics import VideoClassificationMetrics

    clip_only = suite_kwargs.pop("reduction", "unset") is None  # histogram mode: no ids
    suite = VideoClassificationMetrics(C, **suite_kwargs)
    module.eval()
    with torch.no_grad():
        logits = module(data.x)
    if clip_only:
        suite.update(logits, data.target)
    else:
        suite.update(logits, data.target, data.video, torch.arange(len(data)))
    return suite
