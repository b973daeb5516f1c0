"""A NumPy transcription of YouTube-8M's official evaluation (google/youtube-8m: ``eval_util.py``'s
``calculate_hit_at_one``, ``calculate_precision_at_equal_recall_rate``, ``top_k_by_class``;
``average_precision_calculator.py``'s ``ap_at_n`` with its seeded shuffle;
``mean_average_precision_calculator.py``'s ``peek_map_at_n`` with ``filter_empty_classes``; ``eval.py``'s
``top_k=20, top_n=None``), written from those definitions: the reference of tests/test_youtube8m.py
and of benchmarks/youtube8m.py. Loops as the official code loops (its speed is part of what the
benchmark measures)."""
from __future__ import annotations

import random

import numpy as np


def official_hit_at_one(pred, act):
    top = np.argmax(pred, 1)
    return np.average(act[np.arange(act.shape[0]), top])


def official_perr(pred, act):
    total = 0.0
    for row in range(act.shape[0]):
        k = int(np.sum(act[row]))
        top = np.argpartition(pred[row], -k)[-k:]
        p = 0.0
        for i in top:
            if pred[row][i] > 0:
                p += act[row][i]
        total += p / top.size
    return total / act.shape[0]


def official_ap_at_n(predictions, actuals, total_positives):
    predictions, actuals = np.array(predictions), np.array(actuals)
    random.seed(0)
    idx = random.sample(range(len(predictions)), len(predictions))
    predictions, actuals = predictions[idx], actuals[idx]
    order = sorted(range(len(predictions)), key=lambda k: predictions[k], reverse=True)
    if total_positives == 0:
        return 0
    ap, found = 0.0, 0.0
    for i in range(len(order)):
        if actuals[order[i]] > 0:
            found += 1
            ap += found / (i + 1) / total_positives
    return ap


def official_top_k_by_class(pred, act, k):
    k = min(k, pred.shape[1])
    out_p, out_a = [[] for _ in range(pred.shape[1])], [[] for _ in range(pred.shape[1])]
    for v in range(pred.shape[0]):
        for i in np.argpartition(pred[v], -k)[-k:]:
            out_p[i].append(pred[v][i])
            out_a[i].append(act[v][i])
    return out_p, out_a, [np.sum(act[:, i]) for i in range(pred.shape[1])]


def official(pred, act, top_k=20, distinct=True):
    """eval_util.EvaluationMetrics over one batch, get(): hit@1, perr, gap and numpy.mean(aps).
    ``distinct``: check that the pooled top-k scores differ (else the value depends on the shuffle)."""
    sp, sa, npos = official_top_k_by_class(pred, act, top_k)
    pooled = [x for p in sp for x in p]
    assert not distinct or len(set(pooled)) == len(pooled), "tied scores: the official value depends on its shuffle"
    gap = official_ap_at_n([x for p in sp for x in p], [x for a in sa for x in a], sum(npos))
    aps = [official_ap_at_n(sp[c], sa[c], npos[c]) if sp[c] else 0 for c in range(pred.shape[1]) if npos[c] > 0]
    return {"hit_at_1": official_hit_at_one(pred, act), "perr": official_perr(pred, act), "gap": gap,
            "map": np.mean(aps), "num_videos": pred.shape[0]}
