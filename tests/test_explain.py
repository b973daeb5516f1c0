"""Explanations: hand-built models with a known answer, Captum parity, rollout algebra, HF models,
a tiny trained 3D CNN (pointing game, randomisation check), boxes and overlays."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from video_metrics.data import moving_object_clips
from video_metrics.explain import (
    AttentionRollout,
    Box,
    GradCAM,
    GradCAMPlusPlus,
    TokenGrid,
    deletion_auc,
    energy_pointing_game,
    fuse_heads,
    normalize_per_clip,
    overlay_frames,
    pointing_game,
    randomization_check,
    rollout_rows,
    saliency_to_boxes,
    spearman,
    timesformer_rollout_rows,
)
from video_metrics.models import TinyVideoNet

T, H, W = 8, 16, 16
REGION = (slice(4, 8), slice(8, 12))  # rows 4..7, columns 8..11
WINDOW = slice(2, 5)  # frames 2..4


class RegionModel(nn.Module):
    """Channel 0 of ``features`` detects red, channel 1 green. Class 0's score is the red
    activation summed over REGION during WINDOW only; class 1's, the green activation anywhere."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv3d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.features.weight[1, 1] = 1.0
        mask = torch.zeros(T, H, W)
        mask[WINDOW, REGION[0], REGION[1]] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x):
        a = F.relu(self.features(x))
        return torch.stack([(a[:, 0] * self.mask).sum((1, 2, 3)), a[:, 1].sum((1, 2, 3)) * 0.01], 1)


def _region_clip(red_outside_window: bool):
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.rand(1, 3, T, H, W, generator=g)
    x[0, 0] = 0.0  # no red in the background
    x[0, 0, WINDOW, 5:7, 9:11] = 1.0  # red blob inside the region, during the window
    x[0, 1, :, 12:15, 1:4] = 1.0  # a green distractor, always
    if red_outside_window:
        x[0, 0, 6:8, 0:3, 0:3] = 1.0  # red, but outside region and window
    return x


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus])
@pytest.mark.parametrize("weights", ["clip", "frame"])
def test_map_peaks_in_the_known_region_and_window(cls, weights):
    model = RegionModel()
    hm = cls(model, model.features, weights=weights)(_region_clip(False), target=0)
    assert hm.shape == (1, T, H, W) and hm.min() >= 0 and hm.max() == pytest.approx(1.0)
    t, y, x = np.unravel_index(int(hm.argmax()), (T, H, W))
    assert t in range(2, 5) and y in range(4, 8) and x in range(8, 12)
    mass = hm[0].sum((1, 2))
    assert mass[WINDOW].sum() > 0.95 * mass.sum()


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus])
def test_frame_weights_ignore_evidence_outside_the_window(cls):
    model = RegionModel()
    x = _region_clip(True)
    frame = cls(model, model.features, weights="frame")(x, target=0)
    clip = cls(model, model.features, weights="clip")(x, target=0)
    assert float(frame[0, 6:8].max()) == 0.0  # frames outside the window get no weight
    assert float(clip[0, 6:8].max()) > 0.5  # one weight per channel for the whole clip lights them up
    t, y, xx = np.unravel_index(int(frame.argmax()), (T, H, W))
    assert t in range(2, 5) and y in range(4, 8) and xx in range(8, 12)


def test_clip_gradcam_equals_captum_layergradcam_normalised():
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = TinyVideoNet(5).eval()
    x = torch.randn(3, 3, 6, 16, 16)
    target = torch.tensor([0, 3, 1])
    ours = GradCAM(model, model.block3)(x, target)
    ref = LayerGradCam(model, model.block3).attribute(x, target=target, relu_attributions=True).detach()
    ref = LayerAttribution.interpolate(ref, (6, 16, 16), interpolate_mode="trilinear")[:, 0]
    flat = ref.reshape(3, -1)
    ref = ((flat - flat.min(1, keepdim=True).values) / (flat.max(1, keepdim=True).values - flat.min(1, keepdim=True).values))
    torch.testing.assert_close(ours, ref.reshape(3, 6, 16, 16), atol=1e-6, rtol=0)


def test_gradcam_plus_plus_matches_hand_computation():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 2, 2, 2, 2, generator=g)
    grad = torch.randn(1, 2, 2, 2, 2, generator=g)
    model = nn.Identity()
    for weights in ("clip", "frame"):
        got = GradCAMPlusPlus(model, model, weights=weights)._cam(a, grad)[0].numpy()
        A, G = a[0].double().numpy(), grad[0].double().numpy()
        exp = np.zeros((2, 2, 2))
        for t in range(2):
            ts = [0, 1] if weights == "clip" else [t]
            w = np.zeros(2)
            for k in range(2):
                s = sum(A[k, tt].sum() for tt in ts)
                for tt in ts:
                    for i in range(2):
                        for j in range(2):
                            gg = G[k, tt, i, j]
                            den = 2 * gg**2 + s * gg**3
                            alpha = gg**2 / den if den != 0 else 0.0
                            w[k] += alpha * max(gg, 0.0)
            exp[t] = np.maximum((w[:, None, None] * A[:, t]).sum(0), 0)
        np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)


def test_explaining_leaves_model_grads_mode_and_hooks_alone_and_works_in_inference_mode():
    torch.manual_seed(0)
    model = TinyVideoNet(4)
    model.train()
    x = torch.randn(2, 3, 4, 16, 16)
    for p in model.parameters():
        p.grad = None
    with torch.inference_mode():
        xi = x.clone()
        for cls, w in ((GradCAM, "clip"), (GradCAM, "frame"), (GradCAMPlusPlus, "clip")):
            hm = cls(model, model.block3, weights=w)(xi, torch.tensor([1, 2]))  # target made in inference mode too
            assert hm.shape == (2, 4, 16, 16) and torch.isfinite(hm).all()
    with torch.no_grad():
        hm2 = GradCAM(model, model.block3)(x)
    assert not hm2.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())


def test_batch_invariance():
    torch.manual_seed(0)
    model = TinyVideoNet(4).eval()
    x = torch.randn(3, 3, 4, 16, 16)
    both = GradCAMPlusPlus(model, model.block3)(x)
    alone = GradCAMPlusPlus(model, model.block3)(x[1:2])
    torch.testing.assert_close(both[1:2], alone, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ rollout
def test_row_vector_rollout_equals_dense_product():
    g = torch.Generator().manual_seed(0)
    attns = [torch.rand(2, 3, 7, 7, generator=g).softmax(-1) for _ in range(4)]
    start = torch.rand(2, 7, generator=g)
    for fusion in ("mean", "max", "min"):
        for discard in (0.0, 0.3):
            rows = rollout_rows(attns, start, fusion, discard)
            dense = torch.eye(7).expand(2, 7, 7).clone()
            for a in attns:  # R = A_L ... A_1
                dense = torch.bmm(fuse_heads(a, fusion, discard), dense)
            torch.testing.assert_close(rows, torch.bmm(start[:, None], dense)[:, 0], atol=1e-6, rtol=0)
    # identity attention: the rollout is the query itself
    eye = [torch.eye(5).expand(1, 2, 5, 5) for _ in range(3)]
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])
    torch.testing.assert_close(rollout_rows(eye, q), q)


def test_timesformer_divided_rollout_equals_dense_construction():
    g = torch.Generator().manual_seed(0)
    b, n, t, heads, layers = 2, 4, 3, 2, 3
    spatial = [torch.rand(b * t, heads, n + 1, n + 1, generator=g).softmax(-1) for _ in range(layers)]
    temporal = [torch.rand(b * n, heads, t, t, generator=g).softmax(-1) for _ in range(layers)]
    rows = timesformer_rollout_rows(spatial, temporal, b, t)
    L = 1 + n * t

    def tok(p, tt):
        return 1 + p * t + tt

    for bi in range(b):
        r = torch.zeros(L)
        r[0] = 1.0
        R = torch.eye(L, dtype=torch.float64)
        for s_attn, t_attn in zip(spatial, temporal):
            S = torch.zeros(L, L, dtype=torch.float64)
            Tm = torch.zeros(L, L, dtype=torch.float64)
            Tm[0, 0] = 1.0
            s = fuse_heads(s_attn, protect_first=True).double().view(b, t, n + 1, n + 1)[bi]
            tm = fuse_heads(t_attn).double().view(b, n, t, t)[bi]
            for tt in range(t):
                S[0, 0] += s[tt, 0, 0] / t
                for q in range(n):
                    S[0, tok(q, tt)] += s[tt, 0, 1 + q] / t
                for p in range(n):
                    S[tok(p, tt), 0] = s[tt, 1 + p, 0]
                    for q in range(n):
                        S[tok(p, tt), tok(q, tt)] = s[tt, 1 + p, 1 + q]
            for p in range(n):
                for tt in range(t):
                    for ss in range(t):
                        Tm[tok(p, tt), tok(p, ss)] = tm[p, tt, ss]
            R = (S @ Tm) @ R
        torch.testing.assert_close(rows[bi].double(), (r.double() @ R), atol=1e-6, rtol=0)
        assert float(rows[bi].sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("order", ["thw", "hwt"])
def test_token_grid_order_round_trip(order):
    grid = TokenGrid(3, 2, 4, cls_token=(order == "hwt"), order=order)
    tokens = torch.zeros(1, grid.num_tokens, 1)
    t, h, w = 2, 1, 3
    idx = (t * 8 + h * 4 + w) if order == "thw" else (1 + (h * 4 + w) * 3 + t)
    tokens[0, idx, 0] = 1.0
    g = grid.to_grid(tokens)
    assert g.shape == (1, 1, 3, 2, 4)
    assert torch.nonzero(g[0, 0]).tolist() == [[t, h, w]]
    torch.testing.assert_close(grid.to_tokens(g, tokens), tokens)
    with pytest.raises(ValueError, match="expects"):
        grid.to_grid(torch.zeros(1, grid.num_tokens + 1, 1))


@pytest.fixture(scope="module")
def hf_models():
    tr = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(image_size=32, patch_size=16, num_frames=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=37, num_labels=3)
    vm = tr.VideoMAEForVideoClassification(tr.VideoMAEConfig(tubelet_size=2, **common)).eval()
    ts = tr.TimesformerForVideoClassification(tr.TimesformerConfig(**common)).eval()
    return vm, ts


def test_rollout_on_hf_videomae_switches_sdpa_to_eager_and_back(hf_models):
    vm, _ = hf_models
    assert vm.config._attn_implementation == "sdpa"
    x = torch.randn(2, 4, 3, 32, 32)
    out = vm(pixel_values=x, output_attentions=True)
    assert not out.attentions  # SDPA keeps no weights: the reason for the switch
    maps = AttentionRollout(vm)(x)
    assert maps.shape == (2, 4, 32, 32) and torch.isfinite(maps).all() and float(maps.max()) == pytest.approx(1.0)
    assert float(maps.std()) > 0
    assert vm.config._attn_implementation == "sdpa"
    # the rollout equals the dense product over the eager attentions
    vm.set_attn_implementation("eager")
    attns = vm(pixel_values=x, output_attentions=True).attentions
    vm.set_attn_implementation("sdpa")
    r = rollout_rows(list(attns), torch.full((2, 8), 1 / 8))
    # each tubelet token covers its 2 frames (placed over them, not blended in time); bilinear in space
    per_frame = r.reshape(2, 2, 2, 2).repeat_interleave(2, dim=1)  # (N, T, h, w)
    ref = normalize_per_clip(F.interpolate(per_frame, size=(32, 32), mode="bilinear"))
    torch.testing.assert_close(maps, ref, atol=1e-6, rtol=0)


def test_rollout_on_hf_timesformer_reads_spatial_and_temporal_attention(hf_models):
    _, ts = hf_models
    x = torch.randn(2, 4, 3, 32, 32)
    maps = AttentionRollout(ts, head_fusion="max", discard_ratio=0.1)(x)
    assert maps.shape == (2, 4, 32, 32) and torch.isfinite(maps).all() and float(maps.std()) > 0
    assert all(len(m._forward_hooks) == 0 for m in ts.modules())
    with pytest.raises(ValueError, match="arch"):
        AttentionRollout(nn.Linear(2, 2))


def test_gradcam_on_hf_transformer_blocks_via_token_grid(hf_models):
    vm, ts = hf_models
    x = torch.randn(2, 4, 3, 32, 32)
    fwd_vm = lambda px: vm(pixel_values=px).logits  # noqa: E731
    hm = GradCAM(vm, vm.videomae.encoder.layer[-1], layout="NTCHW", reshape=TokenGrid(2, 2, 2), forward_fn=fwd_vm)(x)
    assert hm.shape == (2, 4, 32, 32) and float(hm.max()) == pytest.approx(1.0)
    fwd_ts = lambda px: ts(pixel_values=px).logits  # noqa: E731
    grid = TokenGrid(4, 2, 2, cls_token=True, order="hwt")
    hm = GradCAMPlusPlus(ts, ts.timesformer.encoder.layer[-2], layout="NTCHW", reshape=grid, forward_fn=fwd_ts)(x)
    assert hm.shape == (2, 4, 32, 32) and torch.isfinite(hm).all()
    # the last TimeSformer block's patch tokens get no gradient (CLS head): a flat, all-zero map
    with pytest.warns(UserWarning, match="all zero or constant"):
        last = GradCAM(ts, ts.timesformer.encoder.layer[-1], layout="NTCHW", reshape=grid, weights="frame",
                       forward_fn=fwd_ts)(x)
    assert float(last.abs().max()) == 0.0


# ------------------------------------------------------------------ a tiny trained model
def _train(seed: int, n: int = 400, epochs: int = 6):
    d = moving_object_clips(n, 1, frames=8, size=32, seed=100 + seed)
    torch.manual_seed(seed)
    m = TinyVideoNet(len(d.class_names))
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    x, y = d.float_clips(), d.target
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return m.eval()


@pytest.fixture(scope="session")
def trained():
    test = moving_object_clips(60, 1, frames=8, size=32, seed=999)
    return {"model": _train(0), "other": _train(1), "test": test}


METHODS = {
    "gradcam/clip": lambda m: GradCAM(m, m.block3),
    "gradcam/frame": lambda m: GradCAM(m, m.block3, weights="frame"),
    "gradcam++/clip": lambda m: GradCAMPlusPlus(m, m.block3),
    "gradcam++/frame": lambda m: GradCAMPlusPlus(m, m.block3, weights="frame"),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_trained_model_pointing_game_beats_random_maps(trained, name):
    d = trained["test"]
    x = d.float_clips()
    with torch.no_grad():
        acc = float((trained["model"](x).argmax(1) == d.target).float().mean())
    assert acc > 0.3  # 12 classes: chance is 0.083
    hm = METHODS[name](trained["model"])(x, d.target)
    pg = pointing_game(hm, d.boxes, tolerance_px=4)  # one block3 cell = 4 px
    epg = energy_pointing_game(hm, d.boxes)
    rnd = torch.rand(hm.shape, generator=torch.Generator().manual_seed(0))
    pg_rnd = pointing_game(rnd, d.boxes, tolerance_px=4)
    epg_rnd = energy_pointing_game(rnd, d.boxes)
    print(f"{name}: pointing {pg:.3f} (random {pg_rnd:.3f}), energy {epg:.3f} (random {epg_rnd:.3f}), accuracy {acc:.2f}")
    assert pg > 0.8 and pg > 3 * pg_rnd
    assert epg > 3 * epg_rnd


def test_randomised_model_maps_correlate_less_than_another_seed(trained):
    d = trained["test"]
    x = d.float_clips()
    make = METHODS["gradcam/clip"]
    ours = make(trained["model"])(x, d.target)
    other = spearman(ours, make(trained["other"])(x, d.target)).mean().item()
    rnd = randomization_check(make, trained["model"], x, d.target, num_modules=None, seed=0).mean().item()
    print(f"Spearman vs second seed {other:.3f}, vs weight-randomised {rnd:.3f}")
    assert other > rnd + 0.25


def test_deletion_auc_hand_example():
    class Sum(nn.Module):  # p(class 0) = sigmoid(sum of x): deleting (zeroing) positives lowers it
        def forward(self, x):
            s = x.sum((1, 2, 3, 4))
            return torch.stack([s, torch.zeros_like(s)], 1)

    x = torch.zeros(1, 1, 1, 1, 4)
    x[0, 0, 0, 0] = torch.tensor([1.0, 2.0, 0.5, 0.0])
    hm = torch.tensor([[[[0.5, 1.0, 0.2, 0.0]]]])
    auc = deletion_auc(Sum(), x, hm, steps=2, target=torch.tensor([0]))
    p = torch.sigmoid(torch.tensor([3.5, 0.5, 0.0], dtype=torch.float64))  # none, {1, 2.0} removed, all removed
    exp = ((p[0] + p[1]) / 2 + (p[1] + p[2]) / 2) / 2
    assert float(auc) == pytest.approx(float(exp), abs=1e-6)
    worst = deletion_auc(Sum(), x, 1 - hm, steps=2, target=torch.tensor([0]))
    assert float(worst) > float(auc)


# ------------------------------------------------------------------ boxes and overlays
def test_boxes_from_blob_heatmap_match_the_blob_exactly():
    hm = torch.zeros(2, 3, 20, 30)
    hm[0, 0, 3:9, 10:17] = 1.0  # blob (x 10..16, y 3..8)
    hm[0, 0, 5, 12] = 0.7
    hm[0, 1, 12:15, 2:5] = 0.6
    hm[0, 1, 0:1, 25:30] = 0.9  # a second, smaller component (5 pixels vs 9), higher peak
    hm[1, 0, 4:6, 4:6] = 0.05  # clip 1: weak everywhere except frame 2
    hm[1, 2, 10:16, 0:8] = 1.0
    boxes = saliency_to_boxes(hm, threshold=0.2)
    assert boxes[0][0] == [Box(10, 3, 17, 9, 1.0)]
    assert boxes[0][1] == [Box(2, 12, 5, 15, pytest.approx(0.6))]  # largest component by pixels
    assert boxes[0][2] == []
    assert boxes[1][0] == []  # below 20% of the clip's max: no box
    assert boxes[1][2] == [Box(0, 10, 8, 16, 1.0)]
    allb = saliency_to_boxes(hm, threshold=0.2, mode="all")
    assert [b[:4] for b in allb[0][1]] == [(25, 0, 30, 1), (2, 12, 5, 15)]  # by decreasing peak
    diag = torch.zeros(1, 1, 4, 4)
    diag[0, 0, [0, 1, 2, 3], [0, 1, 2, 3]] = 1.0  # 8-connectivity joins the diagonal
    assert saliency_to_boxes(diag)[0][0] == [Box(0, 0, 4, 4, 1.0)]


def test_overlay_figure_and_array():
    d = moving_object_clips(1, 1, frames=12, size=32, seed=0)
    clip = d.float_clips()[0]
    hm = torch.zeros(12, 32, 32)
    for t in range(12):
        x0, y0, x1, y1 = d.boxes[0, 0, t].tolist()
        hm[t, y0:y1, x0:x1] = 1.0
    boxes = saliency_to_boxes(hm[None])[0]
    fig, rgb = overlay_frames(clip, hm, boxes, max_frames=6, title="true square_right, predicted square_right (0.91)")
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and rgb.std() > 10
    assert len(fig.axes) == 6 and all(len(ax.patches) == 1 for ax in fig.axes)
    assert "proxy boxes" in fig._suptitle.get_text()
    mean, std = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]
    norm = (clip - torch.tensor(mean)[:, None, None, None]) / torch.tensor(std)[:, None, None, None]
    _, rgb2 = overlay_frames(norm, hm, boxes, max_frames=6, mean=mean, std=std,
                             title="true square_right, predicted square_right (0.91)")
    assert np.abs(rgb2.astype(int) - rgb.astype(int)).max() <= 2  # normalisation undone for display


def test_missing_evidence_hides_the_object_where_it_says():
    plain = moving_object_clips(40, 4, 8, 32, seed=3)
    hard = moving_object_clips(40, 4, 8, 32, seed=3, missing_evidence=0.5)
    vis = hard.visible[:, 0]  # (N, T)
    assert plain.visible.all() and torch.equal(plain.target, hard.target)
    damaged = ~vis.all(1)
    assert 0.35 < damaged.float().mean() < 0.65 and (~vis.any(1)).any()  # some clips have no object at all
    # where visible the clips are as without missing evidence; where hidden, background noise only
    frames_p = plain.clips.permute(0, 2, 1, 3, 4)  # (N, T, 3, H, W)
    frames_h = hard.clips.permute(0, 2, 1, 3, 4)
    assert torch.equal(frames_p[vis], frames_h[vis])
    assert frames_h[~vis].max() <= round(0.25 * 255) and frames_p[~vis].max() > 0.5 * 255
    assert (hard.boxes[:, 0][~vis] == 0).all() and (hard.boxes[:, 0][vis][:, 2:] > hard.boxes[:, 0][vis][:, :2]).all()
    with pytest.raises(ValueError, match="missing_evidence"):
        moving_object_clips(2, missing_evidence=1.5)


def test_frames_without_an_object_are_not_scored():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, :, 2, 2] = 1.0  # peak at (x=2, y=2) in every frame
    boxes = torch.tensor([[[1, 1, 4, 4], [0, 0, 0, 0], [5, 5, 8, 8]]])  # hit, no object, miss
    assert pointing_game(maps, boxes) == 0.5
    assert pointing_game(maps, boxes, tolerance_px=3) == 1.0  # the empty box does not grow into a hit
    assert pointing_game(maps, boxes, reduction="none").tolist() == [[True, False, False]]
    assert energy_pointing_game(maps, boxes) == 0.5
    assert np.isnan(pointing_game(maps, torch.zeros(1, 3, 4, dtype=torch.long)))
