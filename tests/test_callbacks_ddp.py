"""VideoMetricsCallback on 2 CPU processes: the numbers of a single-process run, figures written once."""
from __future__ import annotations

import glob
import os

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from _lightning import C, TinyModule, reference
from video_metrics.callbacks import VideoMetricsCallback

pytestmark = pytest.mark.timeout(180)


class NoClipIds(TinyModule):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        out = super().validation_step(batch, batch_idx)
        out.pop("clip_ids")
        return out


def _ddp_trainer(tmp, strategy, epochs=1):
    cb = VideoMetricsCallback(C, top_k=(1, 2), video_reduction="mean_probs")
    return pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_epochs=epochs,
                      logger=TensorBoardLogger(str(tmp), name="tb"), callbacks=[cb], enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                      default_root_dir=str(tmp))


def _assert_equal_to_reference(metrics, module):
    ref = reference(module, module.val_sets[0], top_k=(1, 2), video_reduction="mean_probs").compute()
    for k, v in ref.items():
        assert float(metrics[f"val/{k}"]) == pytest.approx(float(v), rel=1e-6, abs=1e-6), k


def _images(tmp):
    files = glob.glob(os.path.join(str(tmp), "tb", "**", "events.out.tfevents.*"), recursive=True)
    out = {}
    for f in files:
        acc = EventAccumulator(f, size_guidance={"images": 0})
        acc.Reload()
        for tag in acc.Tags()["images"]:
            out[tag] = out.get(tag, 0) + len(acc.Images(tag))
    return files, out


def test_ddp_fork_validate_equals_single_process_despite_padding(tmp_path):
    module = TinyModule()
    assert len(module.val_sets[0]) % 2 == 1  # 69 clips: the sampler pads rank 1 with a duplicate
    trainer = _ddp_trainer(tmp_path, "ddp_fork")
    trainer.validate(module, verbose=False)
    _assert_equal_to_reference(trainer.callback_metrics, module)
    assert float(trainer.callback_metrics["val/video/num_clips"]) == 69
    files, images = _images(tmp_path)
    assert len(files) == 1  # only global rank zero writes
    assert images and all(n == 1 for n in images.values()), images

    # without clip ids the padded duplicate cannot be recognised: it is counted
    module2 = NoClipIds()
    trainer2 = _ddp_trainer(tmp_path / "noids", "ddp_fork")
    trainer2.validate(module2, verbose=False)
    assert float(trainer2.callback_metrics["val/video/num_clips"]) == 70


def test_ddp_spawn_fit_equals_single_process(tmp_path):
    module = TinyModule()
    trainer = _ddp_trainer(tmp_path, "ddp_spawn", epochs=1)
    trainer.fit(module)
    # the parent's module gets rank zero's trained weights back; callback_metrics come back too
    _assert_equal_to_reference(trainer.callback_metrics, module)
    files, images = _images(tmp_path)
    assert len(files) == 1 and images and all(n == 1 for n in images.values()), images
