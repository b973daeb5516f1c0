"""explain(model, clips) on the structures of the video zoo: the layer chosen by tracing, the layout
read (or refused), each map equal to a Grad-CAM written by hand with the layout known, maps placed
over the frames they were computed from, flat maps warned, nothing of the model changed."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _zoo_models import (
    ChannelsLastNet,
    FramesInBatchTokensNet,
    HeadConvNet,
    StridedTimeNet,
    TimeFirstNet,
    TupleTokensNet,
    TwoPathwayNet,
    reference_gradcam,
)
from video_metrics.explain import AttentionRollout, GradCAM, GradCAMPlusPlus, explain
from video_metrics.explain.structure import Reading, parse_clips, place_on_frames
from video_metrics.explain.trace import trace_model


def _assert_same_map(got, ref, atol=1e-5):
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=atol, rtol=0)


def _untouched(model):
    assert all(p.grad is None for p in model.parameters())
    assert all(len(m._forward_hooks) == 0 and len(m._backward_hooks) == 0 for m in model.modules())



def seeded(make_model, draw, shape):
    """The model (eval mode) and clips of ``shape`` drawn by ``draw``, after seeding torch with 0."""
    torch.manual_seed(0)
    return make_model().eval(), draw(*shape)

# ------------------------------------------------------------------ channels last (Swin3D)
def test_channels_last_stage_is_read_channels_last_and_equals_the_hand_written_map():
    torch.manual_seed(0)
    model = ChannelsLastNet().eval()
    x = torch.randn(2, 3, 8, 16, 16)
    e = explain(model, x)
    assert e.method == "gradcam" and e.layer == "stage" and "channels last" in e.reading and e.grids == ((4, 4, 4),)
    tgt = model(x).argmax(1)
    ref = reference_gradcam(model, model.stage, x, lambda a: a.permute(0, 4, 1, 2, 3), tgt, 8, (16, 16))
    _assert_same_map(e.maps, ref)
    # the lower-level class reads it the same way (it used to read (N, t, h, w, C) as (N, C, T, H, W))
    _assert_same_map(GradCAM(model, model.stage, weights="frame")(x), ref)
    # read as channels first, the map has nothing to do with the right one
    wrong = reference_gradcam(model, model.stage, x, lambda a: a, tgt, 8, (16, 16))
    assert not torch.allclose(wrong, ref, atol=1e-3)
    _untouched(model)


# ------------------------------------------------------------------ (x, thw) tuples and a CLS-only head (MViT)
def test_tuple_token_blocks_with_a_cls_head_step_back_to_the_last_block_with_a_gradient():
    model, x = seeded(TupleTokensNet, torch.randn, (2, 3, 8, 16, 16))
    e = explain(model, x)
    # the last block's patch tokens reach the score only through CLS: its map is all zero; the block before is used
    assert e.layer == "blocks.1" and "class token" in e.reason
    assert "1 extra token" in e.reading and "order thw" in e.reading and e.grids == ((4, 4, 4),)
    tgt = model(x).argmax(1)
    grid = lambda a: a[:, 1:].reshape(a.shape[0], 4, 4, 4, -1).permute(0, 4, 1, 2, 3)  # noqa: E731
    _assert_same_map(e.maps, reference_gradcam(model, model.blocks[1], x, grid, tgt, 8, (16, 16), item=0))
    for weights in ("clip", "frame"):  # clip weights used to fail inside Captum on the (x, thw) tuple
        got = GradCAM(model, model.blocks[1], weights=weights)(x)
        _assert_same_map(got, reference_gradcam(model, model.blocks[1], x, grid, tgt, 8, (16, 16), weights, item=0))
    with pytest.warns(UserWarning, match=r"no gradient.*try layer='blocks.1'"):
        flat = explain(model, x, layer="blocks.2")
    assert flat.flat == (0, 1) and float(flat.maps.abs().max()) == 0.0
    _untouched(model)


def test_a_layer_with_heads_folded_into_the_batch_is_refused_naming_the_layer_and_shape():
    torch.manual_seed(0)
    model = TupleTokensNet().eval()
    x = torch.randn(1, 3, 8, 16, 16)
    with pytest.raises(ValueError, match=r"layer 'pool.pool' is \(4, 4, 4, 4, 4\).*one map per clip for 1 clip"):
        explain(model, x, layer="pool.pool")
    with pytest.raises(ValueError, match="pool.pool"):
        GradCAM(model, "pool.pool")(x)
    _untouched(model)


# ------------------------------------------------------------------ two pathways (SlowFast)
def test_two_pathways_in_a_list_give_maps_on_the_fast_frames():
    torch.manual_seed(0)
    model = TwoPathwayNet().eval()
    slow, fast = torch.rand(2, 3, 2, 16, 16), torch.rand(2, 3, 8, 16, 16)
    e = explain(model, [slow, fast])
    assert e.layer == "stage" and e.grids == ((2, 4, 4), (8, 4, 4)) and e.maps.shape == (2, 8, 16, 16)
    tgt = model([slow, fast]).argmax(1)
    ref = reference_gradcam(model, model.stage, [slow, fast], lambda a: a, tgt, 8, (16, 16), item="all")
    _assert_same_map(e.maps, ref)
    _assert_same_map(GradCAM(model, model.stage, weights="frame")([slow, fast]), ref)  # used to fail on a list
    for cls in (GradCAM, GradCAMPlusPlus):
        assert cls(model, model.stage, weights="clip")([slow, fast]).shape == (2, 8, 16, 16)
    _untouched(model)


def test_a_slow_pathway_step_sits_on_the_fast_frames_it_was_sampled_from():
    model = TwoPathwayNet().eval()
    with torch.no_grad():
        model.stage.fast.weight.zero_()
        model.stage.fast.bias.zero_()
        model.stage.slow.weight.zero_()
        model.stage.slow.weight[0, 0] = 1.0  # red in the slow pathway
        model.stage.slow.bias.zero_()
        model.head.weight.zero_()
        model.head.weight[0, 0] = 1.0
    slow = torch.zeros(1, 3, 2, 16, 16)
    slow[0, 0, 1, 8:12, 4:8] = 1.0  # red in slow frame 1 only: fast frames 4..7 (every 4th frame sampled)
    fast = torch.rand(1, 3, 8, 16, 16)
    maps = explain(model, [slow, fast], target=0).maps[0]
    mass = maps.sum((1, 2))
    assert float(mass[:4].sum()) == 0.0 and float(mass[4:].min()) > 0
    peak = np.unravel_index(int(maps.argmax()), maps.shape)
    assert 4 <= peak[0] < 8 and 8 <= peak[1] < 12 and 4 <= peak[2] < 8


# ------------------------------------------------------------------ frames folded into the batch as tokens (X-CLIP)
def test_frames_in_batch_tokens_give_one_map_per_clip():
    torch.manual_seed(0)
    model = FramesInBatchTokensNet().eval()
    x = torch.randn(2, 4, 3, 16, 16)  # (N, T, C, H, W)
    e = explain(model, x)
    assert e.maps.shape == (2, 4, 16, 16) and e.layout == "NTCHW"
    assert e.layer == "blocks.0" and "frames in the batch" in e.reading  # blocks.1's patch tokens reach no CLS
    tgt = model(x).argmax(1)

    def grid(a):  # (N·T, 1 + 16, D) clip-major -> (N, D, T, 4, 4)
        return a[:, 1:].reshape(2, 4, 4, 4, -1).permute(0, 4, 1, 2, 3)

    _assert_same_map(e.maps, reference_gradcam(model, model.blocks[0], x, grid, tgt, 4, (16, 16)))
    got = GradCAM(model, model.blocks[0], weights="frame")(x)  # used to give 8 maps for 2 clips (or fail)
    assert got.shape == (2, 4, 16, 16)
    _untouched(model)


# ------------------------------------------------------------------ a 1x1x1 head conv after the last map (X3D)
def test_the_last_map_is_taken_before_the_pooled_head_convs():
    model, x = seeded(HeadConvNet, torch.rand, (2, 3, 6, 16, 16))
    e = explain(model, x)
    assert e.layer == "pre_act" and e.grids == ((6, 8, 8),) and not e.flat
    tr = trace_model(model, parse_clips(x))
    assert tr.by_name("post_conv").collapsed  # the last Conv3d: 1 x 1 x 1, never a map
    tgt = model(x).argmax(1)
    _assert_same_map(e.maps, reference_gradcam(model, model.pre_act, x, lambda a: a, tgt, 6, (16, 16)))


# ------------------------------------------------------------------ layouts
def test_a_model_taking_frames_first_is_read_as_such_and_an_ambiguous_layout_is_refused():
    torch.manual_seed(0)
    model = TimeFirstNet().eval()
    x = torch.randn(2, 8, 3, 16, 16)  # (N, T, C, H, W)
    e = explain(model, x)
    assert e.layout == "NTCHW" and e.maps.shape == (2, 8, 16, 16) and e.layer == "block"
    assert GradCAM(model, model.block)(x).shape == (2, 8, 16, 16)  # used to read the 3 channels as 3 frames
    with pytest.raises(ValueError, match=r"dimensions 1 and 2 both have size 3.*layout='NCTHW'"):
        explain(model, torch.randn(2, 3, 3, 16, 16))
    assert explain(model, torch.randn(2, 3, 3, 16, 16), layout="NTCHW").maps.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="neither dimension 1 nor 2"):
        parse_clips(torch.randn(1, 5, 4, 8, 8))


def test_parse_clips_reads_pathways_and_refuses_what_is_not_clips():
    c = parse_clips([torch.zeros(2, 3, 2, 16, 20), torch.zeros(2, 3, 8, 16, 20)])
    assert c.is_list and c.layout == "NCTHW" and (c.frames, c.height, c.width) == (8, 16, 20) and c.reference == 1
    assert isinstance(c.model_input(), list) and c.model_input() is not c.model_input()
    with pytest.raises(ValueError, match="same clips"):
        parse_clips([torch.zeros(2, 3, 2, 8, 8), torch.zeros(3, 3, 8, 8, 8)])
    with pytest.raises(ValueError, match="5-D"):
        parse_clips(torch.zeros(2, 3, 8, 8))
    with pytest.raises(TypeError, match="clips"):
        parse_clips("video.mp4")


# ------------------------------------------------------------------ time
def test_each_map_step_covers_the_frames_it_was_computed_from():
    model = StridedTimeNet().eval()
    x = 0.02 * torch.rand(1, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    x[0, 0] = 0
    x[0, 0, 4:8, 6:10, 2:6] = 1.0  # red in frames 4..7 (map step 1)
    for method in ("gradcam", "gradcam++"):
        for weights in ("frame", "clip"):
            maps = explain(model, x, method=method, target=0, weights=weights).maps[0]
            mass = maps.sum((1, 2))
            assert float(mass[:4].sum()) == 0.0 and float(mass[8:].sum()) == 0.0, (method, weights)
            assert float(mass[4:8].min()) > 0 and torch.allclose(mass[4:8], mass[4].expand(4))


def test_place_on_frames_by_hand():
    cam = torch.tensor([[[[1.0]], [[2.0]], [[3.0]]]])  # (1, 3, 1, 1)
    assert place_on_frames(cam, 6, 1, 1)[0, :, 0, 0].tolist() == [1, 1, 2, 2, 3, 3]
    assert place_on_frames(cam, 4, 1, 1)[0, :, 0, 0].tolist() == [1, 1, 2, 3]  # step k covers [k·4/3, (k+1)·4/3)
    assert place_on_frames(cam[:, :1], 3, 2, 2).shape == (1, 3, 2, 2)


# ------------------------------------------------------------------ token order
class _OrderedTokens(nn.Module):
    """Joint attention over tubelet tokens laid out in a given order (or a scrambled one)."""

    def __init__(self, order: str = "thw", scramble: bool = False) -> None:
        super().__init__()
        from _zoo_models import FrameBlock

        self.order, self.scramble = order, scramble
        self.embed = nn.Conv3d(3, 16, (2, 4, 4), stride=(2, 4, 4))
        self.tok = nn.Identity()
        self.blocks = nn.ModuleList(FrameBlock(16) for _ in range(2))
        self.head = nn.Linear(16, 3)
        self.register_buffer("perm", torch.randperm(64, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        g = self.embed(x)  # (N, D, t, h, w)
        g = g.permute(0, *(2 + "thw".index(a) for a in self.order), 1)
        z = g.reshape(g.shape[0], -1, g.shape[-1])
        if self.scramble:
            z = z[:, self.perm]
        z = self.tok(z)
        for blk in self.blocks:
            z = blk(z)
        return self.head(z.mean(1))


@pytest.mark.parametrize("order", ["thw", "hwt", "twh"])
def test_token_order_is_found_by_perturbation_and_the_map_is_right(order):
    torch.manual_seed(0)
    model = _OrderedTokens(order).eval()
    x = torch.randn(2, 3, 8, 16, 16)
    e = explain(model, x)
    assert e.layer == "blocks.1" and f"order {order}" in e.reading
    sizes = {"t": 4, "h": 4, "w": 4}
    tgt = model(x).argmax(1)

    def grid(a):
        g = a.reshape(a.shape[0], *(sizes[k] for k in order), a.shape[-1])
        return g.permute(0, 4, *(1 + order.index(k) for k in "thw"))

    _assert_same_map(e.maps, reference_gradcam(model, model.blocks[1], x, grid, tgt, 8, (16, 16)))


def test_tokens_in_an_order_no_axis_order_explains_are_refused():
    torch.manual_seed(0)
    model = _OrderedTokens(scramble=True).eval()
    x = torch.randn(2, 3, 8, 16, 16)
    tr = trace_model(model, parse_clips(x))
    assert tr.by_name("blocks.1").layer_map is None and "could not be established" in tr.by_name("blocks.1").note
    e = explain(model, x)  # the conv embedding stays a valid (earlier) map; no token layer is trusted
    assert e.layer == "embed"
    with pytest.raises(ValueError, match="could not be established"):
        explain(model, x, layer="blocks.1")


# ------------------------------------------------------------------ refusing and warning
def test_relu_clipped_all_zero_maps_warn_and_non_finite_maps_are_refused():
    model = StridedTimeNet().eval()
    x = torch.zeros(1, 3, 8, 8, 8)
    x[0, 1] = 1.0  # only green: class 0 (red) has no evidence anywhere
    with pytest.warns(UserWarning, match=r"all zero or constant for every clip"):
        e = explain(model, x, target=0)
    assert e.flat == (0,) and float(e.maps.max()) == 0.0 and torch.isfinite(e.maps).all()

    class Inf(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 2, 1)

        def forward(self, x):
            return (self.conv(x) * 1e38 * 1e38).mean((2, 3, 4))

    class Scale(nn.Module):
        def forward(self, x):
            return x * 1e30 * 1e30

    class Overflow(nn.Module):  # finite scores, an activation that overflows on the way
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 2, 1)
            self.scale = Scale()

        def forward(self, x):
            return torch.sigmoid(self.scale(self.conv(x))).mean((2, 3, 4))

    with pytest.raises(FloatingPointError, match="not finite"):
        explain(Inf().eval(), torch.rand(1, 3, 4, 8, 8))
    with pytest.raises(FloatingPointError, match="non-finite"):
        explain(Overflow().eval(), torch.rand(1, 3, 4, 8, 8), layer="scale")


def test_explanation_fields_and_the_model_left_as_it_was():
    torch.manual_seed(0)
    model = TupleTokensNet()
    model.train()
    x = torch.randn(3, 3, 8, 16, 16)
    with torch.inference_mode():
        xi = x.clone()
        e = explain(model, xi, target=torch.tensor([2, 0, 1]))
    assert model.training
    _untouched(model)
    model.eval()
    with torch.no_grad():
        probs = model(x).softmax(1)
    assert e.target.tolist() == [2, 0, 1] and torch.equal(e.predicted, probs.argmax(1))
    torch.testing.assert_close(e.probs, probs[[0, 1, 2], [2, 0, 1]], atol=1e-6, rtol=0)
    torch.testing.assert_close(e.confidence, probs.max(1).values, atol=1e-6, rtol=0)
    assert e.maps.shape == (3, 8, 16, 16) and float(e.maps.min()) >= 0 and float(e.maps.max()) <= 1
    assert not e.maps.requires_grad and e.summary()["layer"] == "blocks.1"
    with pytest.raises(ValueError, match="method"):
        explain(model, x, method="lime")
    with pytest.raises(ValueError, match=r"target.*\[0, 4\)"):
        explain(model, x, target=7)


def test_a_model_with_frozen_parameters_is_still_explained():
    torch.manual_seed(0)
    model = ChannelsLastNet().eval().requires_grad_(False)
    e = explain(model, torch.randn(2, 3, 8, 16, 16))
    assert e.layer == "stage" and not e.flat


def test_mvit_like_models_are_refused_by_rollout_with_a_pointer_to_gradcam():
    class MViT(TupleTokensNet):
        pass

    with pytest.raises(ValueError, match="MViT.*Grad-CAM"):
        AttentionRollout(MViT())
    with pytest.raises(ValueError, match="MViT.*gradcam"):
        explain(MViT(), torch.randn(1, 3, 8, 16, 16), method="rollout")
    assert explain(MViT().eval(), torch.randn(1, 3, 8, 16, 16)).method == "gradcam"  # auto


def test_readings_round_trip_for_every_kind():
    n, t, h, w, k = 2, 3, 4, 5, 6
    g = torch.randn(n, k, t, h, w)
    cases = {
        Reading("cthw", (), t, h, w, k): g,
        Reading("tchw", (), t, h, w, k): g.permute(0, 2, 1, 3, 4),
        Reading("thwc", (), t, h, w, k): g.permute(0, 2, 3, 4, 1),
        Reading("fold-chw", (), t, h, w, k): g.permute(0, 2, 1, 3, 4).reshape(n * t, k, h, w),
        Reading("fold-chw", (), t, h, w, k, fold="tn"): g.permute(2, 0, 1, 3, 4).reshape(t * n, k, h, w),
        Reading("fold-hwc", (), t, h, w, k): g.permute(0, 2, 3, 4, 1).reshape(n * t, h, w, k),
        Reading("tokens", (), t, h, w, k, prefix=1, order="hwt"):
            torch.cat([torch.zeros(n, 1, k), g.permute(0, 3, 4, 2, 1).reshape(n, -1, k)], 1),
        Reading("fold-tokens", (), t, h, w, k, prefix=1, order="hw"):
            torch.cat([torch.zeros(n * t, 1, k), g.permute(0, 2, 3, 4, 1).reshape(n * t, h * w, k)], 1),
    }
    for reading, x in cases.items():
        torch.testing.assert_close(reading.to_grid(x, n), g, msg=reading.kind)
        back = reading.from_grid(reading.to_grid(x, n), x)
        torch.testing.assert_close(back, x, msg=reading.kind)
        assert back.data_ptr() != x.data_ptr()


def test_a_reused_explainer_explains_each_batch_for_its_own_prediction():
    torch.manual_seed(0)
    model = ChannelsLastNet().eval()
    cam = GradCAM(model, model.stage, weights="frame")
    first, second = torch.randn(3, 3, 8, 16, 16), torch.randn(3, 3, 8, 16, 16)
    cam(first)  # traces the model for this shape
    with torch.no_grad():
        pred = model(second).argmax(1)
    assert not torch.equal(pred, model(first).argmax(1))
    _assert_same_map(cam(second), cam(second, pred))  # the second batch's own predictions, not the first's
