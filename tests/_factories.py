"""One instance of every metric configuration worth checking, by name."""
import video_metrics as vm


def all_metrics(c: int = 10):
    return {
        "top1": lambda: vm.TopKAccuracy(c, k=1),
        "top5_macro": lambda: vm.TopKAccuracy(c, k=5, average="macro"),
        "prf1_mc": lambda: vm.PrecisionRecallF1(c, average="macro"),
        "prf1_ml": lambda: vm.PrecisionRecallF1(c, task="multilabel", average="weighted"),
        "balanced": lambda: vm.BalancedAccuracy(c),
        "confmat": lambda: vm.ConfusionMatrix(c),
        "map_ml": lambda: vm.MeanAveragePrecision(c),
        "map_mc": lambda: vm.MeanAveragePrecision(c, task="multiclass", average="weighted"),
        "auroc_mc": lambda: vm.AUROC(c),
        "auroc_ml": lambda: vm.AUROC(c, task="multilabel", average="micro"),
        "prcurve": lambda: vm.PRCurve(c),
        "map_ml_hist": lambda: vm.MeanAveragePrecision(c, bins=64),
        "auroc_mc_hist": lambda: vm.AUROC(c, bins=64, average="weighted"),
        "prcurve_hist": lambda: vm.PRCurve(c, task="multiclass", bins=32),
        "ece_mc": lambda: vm.CalibrationError(c),
        "ece_ml_quantile": lambda: vm.CalibrationError(c, task="multilabel", binning="quantile"),
        "precision_ml": lambda: vm.Precision(c, task="multilabel", average="micro", zero_division=1),
        "fbeta_mc": lambda: vm.F1Score(c, beta=2.0, average="none"),
        "map_samples": lambda: vm.MeanAveragePrecision(c, average="samples"),
        "auroc_samples_hist": lambda: vm.AUROC(c, task="multilabel", average="samples", bins=32),
        "binary_auroc": lambda: vm.AUROC(task="binary"),
        "binary_map_hist": lambda: vm.MeanAveragePrecision(task="binary", bins=64),
        "binary_top1": lambda: vm.TopKAccuracy(task="binary"),
        "binary_balanced": lambda: vm.BalancedAccuracy(task="binary"),
        "binary_confmat": lambda: vm.ConfusionMatrix(task="binary"),
        "binary_f1": lambda: vm.F1Score(task="binary"),
        "binary_ece": lambda: vm.CalibrationError(task="binary"),
        "binary_ece_quantile": lambda: vm.CalibrationError(task="binary", binning="quantile"),
        "binary_prcurve": lambda: vm.PRCurve(task="binary"),
        "youtube8m": lambda: vm.YouTube8MMetrics(c, top_k=5, input="logits", max_labels=c),
    }
