"""The golden outputs of the engine: ``compute()``, ``report()`` (intervals, slices, views, PR
curves), ``compare()``, ``fit_temperature()``, the single metrics, ``VideoAggregator``,
``ActionMetrics``, and the class-sharded ``compute()`` on 2 and 3 gloo processes, on fixed data
over every task, reduction, policy and histogram mode.

They were recorded before the engine was refactored into one row pass and one class pass
(``python tests/golden/cases.py --write``); ``tests/test_golden.py`` recomputes them and requires
integers to be equal and floats to agree to 1e-12.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import warnings
from typing import Any, Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for _dist

import video_metrics as vm  # noqa: E402
from video_metrics.data import synthetic_predictions  # noqa: E402

GOLDEN = os.path.join(HERE, "golden.json")
C = 7


def plain(x: Any) -> Any:
    """JSON-able with floats kept exactly (repr round-trips); NaN and inf as strings."""
    if isinstance(x, torch.Tensor):
        return plain(x.detach().cpu().tolist()) if x.dim() else plain(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else repr(x)
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "to_dict"):
        return plain(x.to_dict())
    if dataclasses.is_dataclass(x):
        return plain({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})
    if hasattr(x, "item"):
        return plain(x.item())
    return repr(x)


def data(task: str, seed: int = 3, probs: bool = False):
    """23 videos x 3 clips x 7 classes with tied rows, tied classes, an empty class (multiclass) and
    videos without labels (multilabel); group columns for slices."""
    d = synthetic_predictions(23, 3, C, seed=seed, task="multilabel" if task == "multilabel" else "multiclass")
    s, t, vid, cid = d.scores.clone(), d.target.clone(), d.video_ids, d.clip_ids
    s[5] = s[4]
    s[10, 1] = s[10, 2]
    if task == "multiclass":
        t[t == 6] = 0  # class 6 never a target
    elif task == "multilabel":
        t[:6] = 0
    else:  # binary: one score per row, class 0 as the positive
        t = (t == 0).long()
        s = s[:, 0]
    if probs:
        s = torch.softmax(s, 1) if task == "multiclass" else torch.sigmoid(s)
    groups = torch.stack([vid % 3, (vid // 5) % 2], 1)
    return s, t, vid, cid, groups


COMPUTE = {
    "mc_clip": dict(task="multiclass", top_k=(1, 3)),
    "mc_mean_logits": dict(task="multiclass", top_k=(1, 3), video_reduction="mean_logits"),
    "mc_mean_probs_zero": dict(task="multiclass", video_reduction="mean_probs", predicted_absent="zero",
                               empty_class="zero", calibration_bins=7),
    "mc_max_nan_voc11": dict(task="multiclass", video_reduction="max", empty_class="nan", ap_mode="voc11"),
    "mc_vote_interp": dict(task="multiclass", video_reduction="vote", top_k=(1, 2), ap_mode="interpolated"),
    "mc_probs": dict(task="multiclass", video_reduction="mean_probs", input="probs"),
    "mc_kinetics": dict(preset="kinetics", expected_video_ids=list(range(25))),
    "mc_ap_auroc_policies": dict(task="multiclass", video_reduction="mean_logits", ap_empty_class="skip",
                                 auroc_empty_class="zero"),
    "ml_clip": dict(task="multilabel"),
    "ml_max": dict(task="multilabel", video_reduction="max"),
    "ml_mean_logits_exclude": dict(task="multilabel", video_reduction="mean_logits", empty_videos="exclude"),
    "ml_mean_probs_zero": dict(task="multilabel", video_reduction="mean_probs", ap_empty_class="zero",
                               auroc_empty_class="nan", threshold=0.3),
    "ml_probs_interp": dict(task="multilabel", video_reduction="max", input="probs", ap_mode="interpolated"),
    "ml_charades": dict(preset="charades"),
    "bin_clip": dict(task="binary"),
    "bin_mean_probs": dict(task="binary", video_reduction="mean_probs", threshold=0.3),
    "bin_max_probs": dict(task="binary", video_reduction="max", input="probs"),
    "hist_mc": dict(task="multiclass", bins=64),
    "hist_ml": dict(task="multilabel", bins=64),
    "hist_bin": dict(task="binary", bins=32),
}


def _task(cfg) -> str:
    return "multilabel" if cfg.get("preset") == "charades" else cfg.get("task", "multiclass")


def _suite(cfg, extra=None, rows=None):
    task = _task(cfg)
    s, t, vid, cid, groups = data(task, probs=cfg.get("input") == "probs")
    kw = dict(cfg, **(extra or {}))
    m = vm.VideoClassificationMetrics(None if task == "binary" else C, **kw)
    idx = torch.arange(s.shape[0]) if rows is None else rows
    for j in idx.split(8):
        gkw = {"groups": groups[j][:, :len(kw["slices"])]} if kw.get("slices") else {}
        if kw.get("bins") is not None:
            m.update(s[j], t[j], **gkw)
        else:
            m.update(s[j], t[j], vid[j], cid[j], **gkw)
    return m


def compute_cases() -> Dict[str, Any]:
    return {name: plain({k: v for k, v in _suite(cfg).compute().items()}) for name, cfg in COMPUTE.items()}


REPORT = {
    "mc_full": dict(task="multiclass", top_k=(1, 3), video_reduction="mean_logits", bootstrap=40, seed=2,
                    slices=("site", "half"), class_slices={"tail": [3, 4, 5], "empty": [6]},
                    class_frequency=[200, 150, 90, 40, 15, 5, 0], min_slice_size=5),
    "ml_full": dict(task="multilabel", video_reduction="max", bootstrap=40, slices=("site",),
                    class_slices={"some": [0, 2]}, min_slice_size=5),
    "bin_full": dict(task="binary", video_reduction="mean_probs", bootstrap=40, slices=("site",)),
    "mc_probs_report": dict(task="multiclass", video_reduction="mean_probs", input="probs", bootstrap=30),
}


def _curves(level) -> Any:
    if level is None:
        return None
    out = {}
    if getattr(level, "pr_curves", None) is not None:
        out["pr_curves"] = plain({"precision": level.pr_curves.precision, "recall": level.pr_curves.recall})
    if getattr(level, "pr_micro", None) is not None:
        out["pr_micro"] = plain(level.pr_micro)
    return out


def report_cases() -> Dict[str, Any]:
    out = {}
    for name, cfg in REPORT.items():
        cfg = dict(cfg)
        slices = cfg.get("slices", ())
        if slices:
            cfg["slices"] = ("site", "half")[:len(slices)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = _suite(cfg).report()
        out[name] = {"report": plain(rep), "clip_curves": _curves(rep.clip), "video_curves": _curves(rep.video)}
    return out


def compare_cases() -> Dict[str, Any]:
    out = {}
    for name, cfg in (("mc", dict(task="multiclass", video_reduction="mean_logits", slices=("site",), min_slice_size=3)),
                      ("ml", dict(task="multilabel", video_reduction="max")),
                      ("bin", dict(task="binary", video_reduction="mean_probs"))):
        a = _suite(cfg)
        task = _task(cfg)
        s, t, vid, cid, groups = data(task, seed=3)
        s2 = s + 0.7 * torch.randn(s.shape, generator=torch.Generator().manual_seed(9))
        b = vm.VideoClassificationMetrics(None if task == "binary" else C, **cfg)
        for j in torch.arange(s.shape[0]).split(8):
            b.update(s2[j], t[j], vid[j], cid[j], **({"groups": groups[j][:, :1]} if cfg.get("slices") else {}))
        out[name] = plain(vm.compare(a, b, bootstrap=60, seed=1))
    return out


def temperature_cases() -> Dict[str, Any]:
    from video_metrics.functional import fit_temperature

    out = {}
    for name, cfg, level in (("mc_video", dict(task="multiclass", video_reduction="mean_logits"), "video"),
                             ("mc_clip", dict(task="multiclass"), "clip"),
                             ("ml_video", dict(task="multilabel", video_reduction="mean_probs"), "video"),
                             ("bin_clip", dict(task="binary"), "clip")):
        out[name] = plain(_suite(cfg).fit_temperature(level))
    s, t, *_ = data("multiclass")
    out["functional"] = fit_temperature(s, t)
    s, t, *_ = data("multilabel")
    out["functional_ml"] = fit_temperature(s, t, task="multilabel")
    return out


def metric_cases() -> Dict[str, Any]:
    s, t, vid, cid, _ = data("multiclass")
    sm, tm, *_ = data("multilabel")
    sb, tb, *_ = data("binary")
    cases = {
        "top3": (vm.TopKAccuracy(C, k=3), s, t),
        "top1_mean": (vm.TopKAccuracy(C, k=1, average="macro"), s, t),
        "prf_macro": (vm.PrecisionRecallF1(C, average="macro", zero_division=0.0), s, t),
        "prf_weighted_ml": (vm.PrecisionRecallF1(C, task="multilabel", average="weighted"), sm, tm),
        "f1_micro": (vm.F1Score(C, average="micro"), s, t),
        "balanced": (vm.BalancedAccuracy(C), s, t),
        "confusion": (vm.ConfusionMatrix(C), s, t),
        "map_ml": (vm.MeanAveragePrecision(C, task="multilabel"), sm, tm),
        "map_mc_voc11": (vm.MeanAveragePrecision(C, task="multiclass", ap_mode="voc11"), s, t),
        "auroc_mc": (vm.AUROC(C), s, t),
        "auroc_bin": (vm.AUROC(task="binary"), sb, tb),
        "prcurve_ml": (vm.PRCurve(C, task="multilabel"), sm, tm),
        "ece_mc": (vm.CalibrationError(C, n_bins=10), s, t),
        "ece_ml_probs": (vm.CalibrationError(C, task="multilabel", input="probs"), torch.sigmoid(sm), tm),
    }
    out = {}
    for name, (m, x, y) in cases.items():
        for j in torch.arange(x.shape[0]).split(8):
            m.update(x[j], y[j])
        out[name] = plain(m.compute())
    for red in ("mean_logits", "mean_probs", "max", "vote"):
        agg = vm.VideoAggregator(C, reduction=red)
        for j in torch.arange(s.shape[0]).split(8):
            agg.update(s[j], t[j], vid[j], cid[j])
        out[f"aggregator_{red}"] = plain(agg.compute())
    act = vm.ActionMetrics(4, 5, top_k=(1, 2), video_reduction="mean_logits")
    g = torch.Generator().manual_seed(4)
    av, an = torch.randn(30, 4, generator=g), torch.randn(30, 5, generator=g)
    tv, tn = (torch.arange(10) % 4).repeat_interleave(3), (torch.arange(10) % 5).repeat_interleave(3)
    act.update(av, an, tv, tn, torch.arange(10).repeat_interleave(3), torch.arange(3).repeat(10))
    out["actions"] = plain(act.compute())
    return out


SHARDED = ["mc_mean_logits", "mc_vote_interp", "mc_kinetics", "ml_mean_logits_exclude", "ml_max", "mc_probs"]


def _sharded_worker(rank, world):
    from torch.utils.data import DistributedSampler

    out = {}
    for name in SHARDED:
        cfg = COMPUTE[name]
        n = 69
        idx = torch.tensor(list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=3)))
        m = _suite(dict(cfg, shard_classes=True), rows=idx)
        out[name] = plain(m.compute())
    return out


def sharded_cases() -> Dict[str, Any]:
    import _dist

    out = {}
    for world in (2, 3):
        res = _dist.run(_sharded_worker, world)
        assert all(r == res[0] for r in res), "ranks disagree"
        out[str(world)] = res[0]
    return out


SECTIONS = {"compute": compute_cases, "report": report_cases, "compare": compare_cases,
            "temperature": temperature_cases, "metrics": metric_cases, "sharded": sharded_cases}


def collect(sections: List[str] = None) -> Dict[str, Any]:
    torch.manual_seed(0)
    return {name: fn() for name, fn in SECTIONS.items() if sections is None or name in sections}


if __name__ == "__main__":
    if "--write" in sys.argv:
        with open(GOLDEN, "w") as f:
            json.dump(collect(), f, indent=0, sort_keys=True)
        print(f"wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes)")
