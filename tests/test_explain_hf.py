"""explain() on Hugging Face VideoMAE, TimeSformer, ViViT and X-CLIP (small random configs): rollout
by default, each against a dense computation written out here; Grad-CAM at the layer the trace
picks, against a Grad-CAM with the token layout given by hand; and ExplainCallback on any model
(rollout through trainer.validate, two-pathway batches, animated overlays to every logger)."""
from __future__ import annotations

import glob
import os

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from _zoo_models import TwoPathwayNet, reference_gradcam
from video_metrics.explain import GradCAM, TokenGrid, explain, normalize_per_clip

tr = pytest.importorskip("transformers")

SMALL = dict(image_size=32, num_frames=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=37, num_labels=3)


@pytest.fixture(scope="module")
def hf():
    torch.manual_seed(0)
    vm = tr.VideoMAEForVideoClassification(tr.VideoMAEConfig(tubelet_size=2, patch_size=8, **SMALL)).eval()
    ts = tr.TimesformerForVideoClassification(tr.TimesformerConfig(patch_size=8, **SMALL)).eval()
    vv = tr.VivitForVideoClassification(tr.VivitConfig(tubelet_size=[2, 8, 8], **SMALL)).eval()
    cfg = tr.XCLIPConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         vocab_size=100, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=37, mit_hidden_size=16, mit_intermediate_size=37,
                           mit_num_hidden_layers=1, mit_num_attention_heads=2),
        projection_dim=16, prompt_layers=1, prompt_num_attention_heads=2)
    xc = tr.XCLIPModel(cfg).eval()
    ids = torch.randint(0, 100, (3, 6), generator=torch.Generator().manual_seed(0))
    return {"videomae": vm, "timesformer": ts, "vivit": vv, "xclip": xc,
            "xclip_fwd": lambda x: xc(input_ids=ids, pixel_values=x).logits_per_video}


def _dense_rollout(attns, start_index=None):
    """R = Ã_L ... Ã_1 in float64 (heads averaged, 0.5·A + 0.5·I, rows renormalised); the row of
    ``start_index`` (or the uniform mean when None)."""
    length = attns[0].shape[-1]
    out = []
    for b in range(attns[0].shape[0]):
        R = torch.eye(length, dtype=torch.float64)
        for a in attns:
            m = 0.5 * a[b].double().mean(0) + 0.5 * torch.eye(length, dtype=torch.float64)
            R = (m / m.sum(-1, keepdim=True)) @ R
        out.append(R.mean(0) if start_index is None else R[start_index])
    return torch.stack(out)


def _on_frames(grid_rows, frames, size):
    """(N, t, h, w) -> repeat each step over frames // t frames, bilinear to size, per-clip normalised."""
    per = grid_rows.float().repeat_interleave(frames // grid_rows.shape[1], dim=1)
    return normalize_per_clip(F.interpolate(per, size=size, mode="bilinear", align_corners=False))


def test_auto_is_rollout_for_every_supported_transformer(hf):
    x = torch.randn(2, 4, 3, 32, 32)
    for name in ("videomae", "timesformer", "vivit"):
        e = explain(hf[name], x)
        assert e.method == "rollout" and e.layer is None and e.maps.shape == (2, 4, 32, 32), name
        assert torch.isfinite(e.maps).all() and float(e.maps.std()) > 0, name
    e = explain(hf["xclip"], x, forward_fn=hf["xclip_fwd"])
    assert e.method == "rollout" and e.maps.shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="forward_fn"):
        explain(hf["xclip"], x, method="rollout")


def test_vivit_rollout_equals_the_dense_product_from_cls(hf):
    vv = hf["vivit"]
    x = torch.randn(2, 4, 3, 32, 32)
    e = explain(vv, x)
    vv.set_attn_implementation("eager")
    try:
        attns = vv(pixel_values=x, output_attentions=True).attentions
    finally:
        vv.set_attn_implementation("sdpa")
    assert vv.config._attn_implementation == "sdpa"
    rows = _dense_rollout(attns, start_index=0)[:, 1:].reshape(2, 2, 4, 4)  # CLS, then tubelets (t, h, w)
    # float32 row products against float64 matrices, stretched to [0, 1] over a small range: 5e-4
    # (a wrong token order or start token is off by O(1))
    torch.testing.assert_close(e.maps, _on_frames(rows, 4, (32, 32)), atol=5e-4, rtol=0)


def test_xclip_rollout_is_a_per_frame_spatial_rollout_without_the_message_token(hf):
    xc = hf["xclip"]
    x = torch.randn(2, 4, 3, 32, 32)
    e = explain(xc, x, forward_fn=hf["xclip_fwd"])
    store = []
    hooks = [layer.self_attn.register_forward_hook(lambda m, i, o: store.append(o[1]))
             for layer in xc.vision_model.encoder.layers]
    xc.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            xc.vision_model(pixel_values=x.reshape(8, 3, 32, 32))
    finally:
        xc.set_attn_implementation("sdpa")
        for h in hooks:
            h.remove()
    assert store[0].shape == (8, 2, 18, 18)  # [CLS] + 16 patches + the message token
    within = [a[..., :17, :17] / a[..., :17, :17].sum(-1, keepdim=True) for a in store]
    rows = _dense_rollout(within, start_index=0)[:, 1:].reshape(2, 4, 4, 4)  # frames clip-major
    torch.testing.assert_close(e.maps, _on_frames(rows, 4, (32, 32)), atol=5e-4, rtol=0)


@pytest.mark.parametrize("name, layer, grid", [
    ("videomae", "videomae.encoder.layer.1", TokenGrid(2, 4, 4)),
    ("timesformer", "timesformer.encoder.layer.0", TokenGrid(4, 4, 4, cls_token=True, order="hwt")),
    ("vivit", "vivit.layers.0", TokenGrid(2, 4, 4, cls_token=True, order="thw")),
])
def test_gradcam_picks_the_last_block_that_reaches_the_class_and_reads_its_tokens_right(hf, name, layer, grid):
    model = hf[name]
    x = torch.randn(2, 4, 3, 32, 32)
    e = explain(model, x, method="gradcam")
    assert e.layer == layer and not e.flat
    ref = GradCAM(model, layer, weights="frame", layout="NTCHW", reshape=grid)(x)
    torch.testing.assert_close(e.maps, ref, atol=1e-5, rtol=0)


def test_gradcam_on_xclip_reads_frames_in_the_batch_at_the_pinned_layer(hf):
    xc, fwd = hf["xclip"], hf["xclip_fwd"]
    x = torch.randn(2, 4, 3, 32, 32)
    e = explain(xc, x, method="gradcam", forward_fn=fwd)
    assert e.layer == "vision_model.encoder.layers.0" and "pinned" in e.reason and e.maps.shape == (2, 4, 32, 32)
    with torch.no_grad():
        tgt = fwd(x).argmax(1)

    def grid(a):  # (N·T, 1 + 16, D), clip-major -> (N, D, T, 4, 4)
        return a[:, 1:].reshape(2, 4, 4, 4, -1).permute(0, 4, 1, 2, 3)

    ref = reference_gradcam(fwd, xc.vision_model.encoder.layers[0], x, grid, tgt, 4, (32, 32))
    torch.testing.assert_close(e.maps, ref, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ ExplainCallback on any model
class _ClipSet(Dataset):
    def __init__(self, n, make):
        g = torch.Generator().manual_seed(0)
        self.items = [make(g) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _Lit(pl.LightningModule):
    def __init__(self, net, make, n=6):
        super().__init__()
        self.net, self.data = net, _ClipSet(n, make)

    def forward(self, x):
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out

    def validation_step(self, batch, batch_idx):
        return {"logits": self(batch["x"]), "target": batch["target"]}

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=4)


def _validate(tmp, module, cb, loggers):
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=loggers, callbacks=[cb], enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=str(tmp))
    trainer.validate(module, verbose=False)
    return trainer


@pytest.mark.parametrize("method", ["rollout", "auto"])
def test_callback_rollout_through_validate(tmp_path, hf, method):
    from pytorch_lightning.loggers import CSVLogger

    module = _Lit(hf["videomae"], lambda g: {"x": torch.randn(4, 3, 32, 32, generator=g),
                                             "target": torch.randint(0, 3, (), generator=g)})
    cb = ExplainCallback(method=method, num_clips=2)
    csv = CSVLogger(str(tmp_path), name="csv")
    _validate(tmp_path, module, cb, [csv])  # used to raise TypeError: the callback passed a target to the rollout
    assert cb.last["explanation"].method == "rollout" and cb.last["maps"].shape == (2, 4, 32, 32)
    assert len(glob.glob(os.path.join(csv.log_dir, "figures", "val", "explain", "clip_1", "*.png"))) == 1
    with open(os.path.join(csv.log_dir, "hparams.yaml")) as f:
        text = f.read()
    assert "explain/method: rollout" in text and "explain/layer: (attention rollout)" in text


def test_callback_on_two_pathway_batches_logs_the_layer_once_and_animations_to_every_logger(tmp_path, monkeypatch):
    from PIL import Image
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    torch.manual_seed(0)
    module = _Lit(TwoPathwayNet(), lambda g: {"x": [torch.rand(3, 2, 16, 16, generator=g),
                                                    torch.rand(3, 8, 16, 16, generator=g)],
                                              "target": torch.randint(0, 4, (), generator=g)})
    cb = ExplainCallback(num_clips=3)
    loggers = [CSVLogger(str(tmp_path), name="csv"), TensorBoardLogger(str(tmp_path), name="tb"),
               WandbLogger(save_dir=str(tmp_path), offline=True, project="video-metrics-test"),
               MLFlowLogger(experiment_name="vm", tracking_uri=f"file:{tmp_path}/mlruns")]
    _validate(tmp_path, module, cb, loggers)
    _validate(tmp_path, module, cb, loggers)
    import wandb

    wandb.finish()
    assert cb.last["layer"] == "net.stage" and cb.last["maps"].shape == (3, 8, 16, 16)
    csv_gifs = sorted(glob.glob(os.path.join(loggers[0].log_dir, "videos", "val", "explain", "clip_2", "animation",
                                             "*.gif")))
    tb_gifs = glob.glob(os.path.join(loggers[1].log_dir, "videos", "val", "explain", "clip_0", "animation", "*.gif"))
    wb_gifs = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "files" / "media" / "videos" / "**" / "*.gif"),
                        recursive=True)
    ml_gifs = glob.glob(str(tmp_path / "mlruns" / "*" / "*" / "artifacts" / "videos" / "**" / "*.gif"), recursive=True)
    assert csv_gifs and tb_gifs and len(wb_gifs) >= 3 and len(ml_gifs) >= 3
    with Image.open(csv_gifs[-1]) as im:
        assert im.n_frames == 8 and min(im.size) >= 128  # every fast frame, enlarged
        im.seek(5)
        import numpy as np

        assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10
    with open(os.path.join(loggers[0].log_dir, "hparams.yaml")) as f:
        text = f.read()
    assert text.count("explain/layer: net.stage") == 1


from video_metrics.callbacks import ExplainCallback  # noqa: E402  (after the importorskip)
