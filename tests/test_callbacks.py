"""VideoMetricsCallback in real Lightning runs: values, loggers read back, DDP, inference mode, checkpoints."""
from __future__ import annotations

import csv
import gc
import glob
import io
import os
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from matplotlib.image import imread
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from _lightning import C, Clips, TinyModule, reference
from video_metrics.callbacks import VideoMetricsCallback, log_figure, register_figure_handler
from video_metrics.plots import new_figure

FIG_TAGS_MC = ["confusion_matrix", "reliability", "per_class_f1"]
FIG_TAGS_ML = ["reliability", "pr_curves", "per_class_ap"]


def _trainer(tmp, loggers, callbacks, epochs=2, **kw):
    args = dict(max_epochs=epochs, accelerator="cpu", devices=1, logger=loggers, callbacks=callbacks,
                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                num_sanity_val_steps=2, default_root_dir=str(tmp))
    args.update(kw)
    return pl.Trainer(**args)


def _events(logdir):
    files = glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)
    assert files, f"no event file under {logdir}"
    accs = []
    for f in files:
        acc = EventAccumulator(f, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        accs.append(acc)
    return accs


def _png_ok(data_or_path):
    img = imread(io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path, format="png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert float(img[..., :3].std()) > 0.01, "blank image"
    return img


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """One fit (3 epochs) feeding TensorBoard, CSV, W&B (offline) and MLflow at once."""
    tmp = tmp_path_factory.mktemp("fit")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_DIR", str(tmp))
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    torch.manual_seed(0)
    loggers = [TensorBoardLogger(str(tmp), name="tb"), CSVLogger(str(tmp), name="csv"),
               WandbLogger(save_dir=str(tmp), offline=True, project="video-metrics-test"),
               MLFlowLogger(experiment_name="vm", tracking_uri=f"file:{tmp}/mlruns")]
    cb = VideoMetricsCallback(C, top_k=(1, 2), video_reduction="mean_probs", class_names=list("abcde"))
    ckpt = ModelCheckpoint(dirpath=str(tmp / "ckpt"), monitor="val/video/top1", mode="max", save_top_k=1)
    early = EarlyStopping(monitor="val/video/ece", mode="min", patience=10)
    module = TinyModule(lr=0.02)
    trainer = _trainer(tmp, loggers, [cb, ckpt, early], epochs=3, enable_checkpointing=True)
    trainer.fit(module)
    import wandb

    wandb.finish()
    yield dict(tmp=tmp, trainer=trainer, module=module, cb=cb, ckpt=ckpt, loggers=loggers)
    mp.undo()


def test_fit_values_equal_the_suite_on_the_same_outputs(fit_run):
    tr, module = fit_run["trainer"], fit_run["module"]
    ref = reference(module, module.val_sets[0], top_k=(1, 2), video_reduction="mean_probs").compute()
    got = {k: float(v) for k, v in tr.callback_metrics.items() if k.startswith("val/")}
    assert set(got) == {f"val/{k}" for k in ref}
    for k, v in ref.items():
        assert got[f"val/{k}"] == pytest.approx(float(v), rel=1e-6, abs=1e-6), k
    assert got["val/video/num_videos"] == 23 and got["val/video/num_clips"] == 69


def test_tensorboard_scalars_and_images_read_back(fit_run):
    tmp, module = fit_run["tmp"], fit_run["module"]
    (acc,) = _events(str(tmp / "tb"))
    tags = acc.Tags()
    ref = reference(module, module.val_sets[0], top_k=(1, 2), video_reduction="mean_probs").compute()
    steps = None
    for k, v in ref.items():
        ev = acc.Scalars(f"val/{k}")
        assert len(ev) == 3, k  # one per epoch; the sanity check logs nothing
        assert ev[-1].value == pytest.approx(float(v), rel=1e-5, abs=1e-6), k
        steps = [e.step for e in ev]
    for level in ("clip", "video"):
        for name in FIG_TAGS_MC:
            tag = f"val/{level}/{name}"
            assert tag in tags["images"], tag
            imgs = acc.Images(tag)
            assert [e.step for e in imgs] == steps, "figures must sit at the step of the epoch's scalars"
            _png_ok(imgs[-1].encoded_image_string)


def test_csv_metrics_and_pngs(fit_run):
    tr, tmp = fit_run["trainer"], fit_run["tmp"]
    log_dir = fit_run["loggers"][1].log_dir
    with open(os.path.join(log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/video/top1")]
    assert len(rows) == 3
    assert float(rows[-1]["val/video/top1"]) == pytest.approx(float(tr.callback_metrics["val/video/top1"]), abs=1e-6)
    for level in ("clip", "video"):
        for name in FIG_TAGS_MC:
            pngs = sorted(glob.glob(os.path.join(log_dir, "figures", "val", level, name, "step_*.png")))
            assert len(pngs) == 3, (level, name)
            _png_ok(pngs[-1])


def test_wandb_offline_media(fit_run):
    runs = glob.glob(str(fit_run["tmp"] / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    for level in ("clip", "video"):
        for name in FIG_TAGS_MC:
            pngs = glob.glob(os.path.join(runs[0], "files", "media", "images", "val", level, f"{name}_*.png"))
            assert len(pngs) == 3, (level, name)
            _png_ok(pngs[0])


def test_mlflow_artifacts(fit_run):
    runs = glob.glob(str(fit_run["tmp"] / "mlruns" / "*" / "*" / "artifacts"))
    assert len(runs) == 1
    for level in ("clip", "video"):
        for name in FIG_TAGS_MC:
            pngs = glob.glob(os.path.join(runs[0], "figures", "val", level, name, "step_*.png"))
            assert len(pngs) == 3, (level, name)
            _png_ok(pngs[0])


def test_model_checkpoint_picks_best_epoch_by_video_metric(fit_run):
    ckpt, log_dir = fit_run["ckpt"], fit_run["loggers"][1].log_dir
    with open(os.path.join(log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/video/top1")]
    per_epoch = [float(r["val/video/top1"]) for r in rows]
    best_epoch = int(np.argmax(per_epoch))  # first maximum: ModelCheckpoint replaces only on strict improvement
    assert float(ckpt.best_model_score) == pytest.approx(max(per_epoch), abs=1e-6)
    assert os.path.basename(ckpt.best_model_path).startswith(f"epoch={best_epoch}-")


def test_validate_under_inference_mode_multilabel_with_pr_curves(tmp_path):
    torch.manual_seed(0)
    module = TinyModule(task="multilabel")
    cb = VideoMetricsCallback(C, task="multilabel", video_reduction="mean_logits")
    seen = {}

    class Probe(pl.Callback):
        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            seen["inference"] = torch.is_inference_mode_enabled()

    tb = TensorBoardLogger(str(tmp_path), name="tb")
    trainer = _trainer(tmp_path, [tb], [cb, Probe()])
    out = trainer.validate(module, verbose=False)
    assert seen["inference"] is True
    ref = reference(module, module.val_sets[0], task="multilabel", video_reduction="mean_logits").compute()
    for k, v in ref.items():
        assert out[0][f"val/{k}"] == pytest.approx(float(v), rel=1e-6, abs=1e-6), k
    (acc,) = _events(str(tmp_path / "tb"))
    tags = acc.Tags()
    for level in ("clip", "video"):
        for name in FIG_TAGS_ML:
            assert f"val/{level}/{name}" in tags["images"]
        pr = [t for t in tags["tensors"] if t.startswith(f"val/{level}/pr_curve/")]
        assert 1 <= len(pr) <= 6
        arr = tensor_util.make_ndarray(acc.Tensors(pr[0])[0].tensor_proto)
        assert arr.shape == (6, 101)  # tp, fp, tn, fn, precision, recall at 101 thresholds
        assert np.all(np.diff(arr[0]) <= 0) and arr[0, 0] == arr[0].max()  # tp falls as the threshold rises

    res = trainer.test(module, verbose=False)
    assert res[0]["test/video/mAP"] == pytest.approx(float(ref["video/mAP"]), abs=1e-6)


def test_several_validation_loaders_get_their_own_keys(tmp_path):
    module = TinyModule(val_sets=[Clips(10, 2, seed=3), Clips(7, 3, seed=4)])
    cb = VideoMetricsCallback(C, top_k=(1,), video_reduction="mean_logits", dataloader_names=["kinetics", "ucf"],
                              log_figures=False)
    trainer = _trainer(tmp_path, False, [cb], epochs=1, num_sanity_val_steps=0)
    trainer.fit(module)
    cm = trainer.callback_metrics
    for name, data in (("kinetics", module.val_sets[0]), ("ucf", module.val_sets[1])):
        ref = reference(module, data, top_k=(1,), video_reduction="mean_logits").compute()
        assert float(cm[f"val/{name}/video/top1"]) == pytest.approx(float(ref["video/top1"]), abs=1e-6)
        assert float(cm[f"val/{name}/video/num_videos"]) == len(data.video.unique())


def test_wrong_step_output_gets_a_clear_error(tmp_path):
    class Bad(TinyModule):
        def validation_step(self, batch, batch_idx):
            return self(batch["x"])

    cb = VideoMetricsCallback(C, log_figures=False)
    with pytest.raises(TypeError, match="must return a dict with 'scores'"):
        _trainer(tmp_path, False, [cb]).validate(Bad(), verbose=False)
    cb = VideoMetricsCallback(C, log_figures=False,
                              extract=lambda out, batch: {"scores": out, "target": batch["target"]})
    out = _trainer(tmp_path, False, [cb]).validate(Bad(), verbose=False)
    assert 0.0 <= out[0]["val/clip/top1"] <= 1.0


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="stages"):
        VideoMetricsCallback(C, stages=("train",))
    with pytest.raises(ValueError, match="video_reduction"):
        VideoMetricsCallback(C, video_reduction="median")
    with pytest.raises(ValueError, match="figures_every_n_epochs"):
        VideoMetricsCallback(C, figures_every_n_epochs=0)


def test_no_figures_left_in_memory_after_20_epochs(tmp_path):
    from matplotlib.figure import Figure

    module = TinyModule(val_sets=[Clips(6, 2, seed=5)])
    module.train_set = Clips(4, 2, seed=6)
    cb = VideoMetricsCallback(C, top_k=(1,), video_reduction="mean_probs")
    trainer = _trainer(tmp_path, [CSVLogger(str(tmp_path), name="csv")], [cb], epochs=20, num_sanity_val_steps=0)
    trainer.fit(module)
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is Figure]
    assert alive == []
    pngs = glob.glob(os.path.join(trainer.loggers[0].log_dir, "figures", "val", "video", "reliability", "*.png"))
    assert len(pngs) == 20
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_figures_every_n_epochs(tmp_path):
    module = TinyModule(val_sets=[Clips(6, 2, seed=5)])
    module.train_set = Clips(4, 2, seed=6)
    cb = VideoMetricsCallback(C, top_k=(1,), figures_every_n_epochs=2)
    trainer = _trainer(tmp_path, [CSVLogger(str(tmp_path), name="csv")], [cb], epochs=5, num_sanity_val_steps=0)
    trainer.fit(module)
    pngs = glob.glob(os.path.join(trainer.loggers[0].log_dir, "figures", "val", "clip", "reliability", "*.png"))
    assert len(pngs) == 3  # epochs 0, 2, 4


def test_unknown_logger_gets_pngs_and_one_warning_custom_handler(tmp_path):
    class MyLogger:
        def __init__(self, d):
            self.log_dir = d

    fig = new_figure(3, 2)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    lg = MyLogger(str(tmp_path / "mine"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        log_figure([lg], "val/x", fig, 7)
        log_figure([lg], "val/x", fig, 8)
    assert sum("no figure handler for logger type 'MyLogger'" in str(x.message) for x in w) == 1
    assert len(glob.glob(str(tmp_path / "mine" / "figures" / "val" / "x" / "step_*.png"))) == 2

    got = []

    class Other:
        pass

    register_figure_handler("Other", lambda logger, tag, rgb, step: got.append((tag, rgb.shape, rgb.dtype, step)))
    log_figure([Other()], "val/y", fig, 3)
    assert got == [("val/y", (200, 300, 3), np.uint8, 3)]


def test_lightning_pytorch_trainer_and_loggers(tmp_path):
    L = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger as LCSV
    from lightning.pytorch.loggers import TensorBoardLogger as LTB

    class LModule(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.inner = TinyModule()
            self.net = self.inner.net

        def forward(self, x):
            return self.net(x)

        def validation_step(self, batch, batch_idx):
            return self.inner._eval_step(batch)

        def val_dataloader(self):
            return self.inner.val_dataloader()

    module = LModule()
    cb = VideoMetricsCallback(C, top_k=(1, 2), video_reduction="mean_probs")
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=[LTB(str(tmp_path), name="tb"), LCSV(str(tmp_path), name="csv")],
                        callbacks=[cb], enable_progress_bar=False, enable_model_summary=False)
    out = trainer.validate(module, verbose=False)
    ref = reference(module.inner, module.inner.val_sets[0], top_k=(1, 2), video_reduction="mean_probs").compute()
    assert out[0]["val/video/top1"] == pytest.approx(float(ref["video/top1"]), abs=1e-6)
    (acc,) = _events(str(tmp_path / "tb"))
    assert "val/video/reliability" in acc.Tags()["images"]
    assert glob.glob(str(tmp_path / "csv" / "**" / "figures" / "val" / "clip" / "reliability" / "*.png"), recursive=True)


def test_histogram_mode_callback_is_clip_level_with_bounded_state(tmp_path):
    module = TinyModule()
    cb = VideoMetricsCallback(C, top_k=(1, 2), bins=200, log_figures=False)
    out = _trainer(tmp_path, False, [cb]).validate(module, verbose=False)[0]
    ref = reference(module, module.val_sets[0], top_k=(1, 2), reduction=None, bins=200).compute()
    assert set(out) == {f"val/{k}" for k in ref} and not any("/video/" in k for k in out)
    for k, v in ref.items():
        assert out[f"val/{k}"] == pytest.approx(float(v), rel=1e-6, abs=1e-6), k


def test_bootstrap_logs_interval_bands_for_the_ci_keys(tmp_path):
    torch.manual_seed(0)
    module = TinyModule()
    cb = VideoMetricsCallback(C, top_k=(1,), video_reduction="mean_logits", bootstrap=60, seed=2, log_figures=False)
    logger = CSVLogger(str(tmp_path), name="csv")
    trainer = _trainer(tmp_path, [logger], [cb], epochs=1, num_sanity_val_steps=0)
    trainer.fit(module)
    cm = trainer.callback_metrics
    ref = reference(module, module.val_sets[0], top_k=(1,), video_reduction="mean_logits", bootstrap=60, seed=2).report()
    assert cb.ci_keys == ("clip/top1", "clip/f1_macro", "clip/auprc_macro", "video/top1", "video/f1_macro",
                          "video/auprc_macro")
    for k in cb.ci_keys:
        lo, hi = ref.intervals[k]
        assert float(cm[f"val/{k}_ci_low"]) == pytest.approx(lo, abs=1e-6)
        assert float(cm[f"val/{k}_ci_high"]) == pytest.approx(hi, abs=1e-6)
        assert lo <= float(cm[f"val/{k}"]) + 1e-6 or k.endswith("auprc_macro")
    assert "val/clip/ece_ci_low" not in cm  # only the ci_keys are logged
    with open(glob.glob(os.path.join(str(tmp_path), "csv", "**", "metrics.csv"), recursive=True)[0]) as f:
        header = next(csv.reader(f))
    assert "val/video/top1_ci_low" in header and "val/video/top1_ci_high" in header


def test_fit_temperature_logs_the_temperature_and_the_cross_fitted_ece(tmp_path):
    torch.manual_seed(0)
    module = TinyModule()
    cb = VideoMetricsCallback(C, top_k=(1,), video_reduction="mean_logits", fit_temperature=True, log_figures=False)
    trainer = _trainer(tmp_path, False, [cb], epochs=1, num_sanity_val_steps=0)
    trainer.fit(module)
    cm = trainer.callback_metrics
    ref = reference(module, module.val_sets[0], top_k=(1,), video_reduction="mean_logits").fit_temperature("video")
    assert float(cm["val/video/temperature"]) == pytest.approx(ref.temperature, rel=1e-5)
    assert float(cm["val/video/ece_calibrated"]) == pytest.approx(ref.ece_cross_fitted, abs=1e-6)
    with pytest.raises(ValueError, match="input='probs'"):
        VideoMetricsCallback(C, video_reduction="mean_probs", input="probs", fit_temperature=True)
