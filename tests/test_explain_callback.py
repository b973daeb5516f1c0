"""ExplainCallback in Lightning runs: overlays logged and read back, inference mode, error selection."""
from __future__ import annotations

import glob
import io
import os

import pytest
import pytorch_lightning as pl
import torch
from matplotlib.image import imread
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from video_metrics.callbacks import ExplainCallback
from video_metrics.data import CLASS_NAMES, MovingObjectClips, moving_object_clips
from video_metrics.models import LitVideoClassifier, TinyVideoNet


class Lit(LitVideoClassifier):
    def __init__(self):
        torch.manual_seed(0)
        super().__init__(TinyVideoNet(len(CLASS_NAMES)))
        self.train_set = MovingObjectClips(moving_object_clips(64, 1, frames=6, size=32, seed=1))
        self.val_set = MovingObjectClips(moving_object_clips(10, 2, frames=6, size=32, seed=2))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=8)


def _trainer(tmp, cbs, loggers, epochs=2):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=loggers, callbacks=cbs,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      num_sanity_val_steps=1, default_root_dir=str(tmp))


def test_fit_logs_overlays_and_pointing_scores_to_tensorboard_and_csv(tmp_path):
    module = Lit()
    cb = ExplainCallback(method="gradcam++", target_layer="net.block3", num_clips=3, clip_key="clip",
                         boxes_key="boxes", class_names=CLASS_NAMES, tolerance_px=4)
    tb, csv = TensorBoardLogger(str(tmp_path), name="tb"), CSVLogger(str(tmp_path), name="csv")
    trainer = _trainer(tmp_path, [cb], [tb, csv])
    params_before = [p.detach().clone() for p in module.parameters()]
    trainer.fit(module)
    assert any(not torch.equal(a, b) for a, b in zip(params_before, module.parameters()))  # it trained
    (f,) = glob.glob(str(tmp_path / "tb" / "**" / "events.out.tfevents.*"), recursive=True)
    acc = EventAccumulator(f, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    for i in range(3):
        imgs = acc.Images(f"val/explain/clip_{i}")
        assert len(imgs) == 2  # two epochs, none from the sanity check
        img = imread(io.BytesIO(imgs[-1].encoded_image_string), format="png")
        assert img.shape[1] > img.shape[0] > 100 and img[..., :3].std() > 0.05
    pg = acc.Scalars("val/explain/pointing_game")
    assert len(pg) == 2 and 0.0 <= pg[-1].value <= 1.0
    assert pg[-1].value == pytest.approx(cb.last["val/explain/pointing_game"])
    # the same clips every epoch: the first three of the validation set
    torch.testing.assert_close(cb.last["clips"], torch.stack([module.val_set[i]["clip"] for i in range(3)]))
    assert cb.last["maps"].shape == (3, 6, 32, 32)
    pngs = glob.glob(os.path.join(csv.log_dir, "figures", "val", "explain", "clip_0", "*.png"))
    assert len(pngs) == 2


def test_validate_in_inference_mode_with_confident_errors(tmp_path):
    module = Lit()
    cb = ExplainCallback(method="gradcam", num_clips=2, select="confident_errors", clip_key="clip", weights="frame")
    trainer = _trainer(tmp_path, [cb], [CSVLogger(str(tmp_path), name="csv")])
    for p in module.parameters():
        p.grad = None
    trainer.validate(module, verbose=False)
    assert all(p.grad is None for p in module.parameters())
    last = cb.last
    assert last is not None and last["maps"].shape[0] == 2
    # the most confident mistakes, most confident first
    module.eval()
    with torch.no_grad():
        x = torch.stack([module.val_set[i]["clip"] for i in range(len(module.val_set))])
        probs = module(x).softmax(1)
    conf, pred = probs.max(1)
    tgt = torch.stack([module.val_set[i]["target"] for i in range(len(module.val_set))])
    wrong_conf = conf[pred != tgt].sort(descending=True).values[:2]
    torch.testing.assert_close(last["confidence"], wrong_conf, atol=1e-5, rtol=0)
    assert all(p != t for p, t in zip(last["predictions"].tolist(), last["targets"]))


def test_bad_arguments_and_missing_clip_key(tmp_path):
    with pytest.raises(ValueError, match="method"):
        ExplainCallback(method="lime")
    with pytest.raises(ValueError, match="select"):
        ExplainCallback(select="random")
    cb = ExplainCallback(clip_key="video")
    lit = Lit()
    steps = []
    original = lit.validation_step
    lit.validation_step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
    with pytest.raises(ValueError, match=r"clip_key='video' is not in the validation batch; the batch is a dict "
                                         r"with keys \['boxes', 'clip', 'clip_id', 'target', 'video_id'\]"):
        _trainer(tmp_path, [cb], False).validate(lit, verbose=False)
    assert len(steps) == 1  # at the first batch, not mid-validation
