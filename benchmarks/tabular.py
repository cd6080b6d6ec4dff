"""Tabular benchmark: PFNClassifier / PFNRegressor against scikit-learn baselines on the same splits.

Classification (scikit-learn's bundled iris, wine, breast_cancer, digits; at most 1,000 training rows,
5 stratified random splits): one-vs-rest ROC AUC, log loss and fit+predict wall time of PFNClassifier,
LogisticRegression, RandomForest and HistGradientBoosting with default settings (plus a
StandardScaler + LogisticRegression pipeline, since unscaled defaults are not what anyone ships).
Regression: PFNRegressor against GaussianProcessRegressor (constant * RBF + white noise, fitted by
marginal likelihood) on the diabetes data and on fresh GP-prior draws (1-D and 4-D): test NLL in
units of the training-standardised target, and wall time.

The PFN checkpoints are loaded once before timing (the load time is reported separately); every
timing is fit + predict of one split, on this machine, with the same thread count for all models.

    python benchmarks/tabular.py            # writes benchmarks/results/tabular.{json,png}
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _results import save_figure  # benchmarks/ is on sys.path when a script runs
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from priorfit.estimators import PFNClassifier, PFNRegressor

RESULTS = Path(__file__).resolve().parent / "results"
MAX_TRAIN = 1000
SPLITS = 5

CLASSIFICATION_DATA = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}
# --clf-checkpoint / --reg-checkpoint score other weights than the bundled ones (e.g. a run's model.safetensors)
CHECKPOINTS: dict[str, str | None] = {"classifier": None, "regressor": None}
CLASSIFIERS = {
    "PFNClassifier": lambda seed: PFNClassifier(checkpoint=CHECKPOINTS["classifier"], random_state=seed),
    "LogisticRegression": lambda seed: LogisticRegression(),
    "RandomForest": lambda seed: RandomForestClassifier(random_state=seed),
    "HistGradientBoosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
    "Scaled LogisticRegression": lambda seed: make_pipeline(StandardScaler(), LogisticRegression()),
}


def split(X: np.ndarray, y: np.ndarray, seed: int, stratify: bool):
    train_size = min(MAX_TRAIN, int(round(0.7 * len(y))))
    return train_test_split(X, y, train_size=train_size, random_state=seed, stratify=y if stratify else None)


def auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    if proba.shape[1] == 2:
        return float(roc_auc_score(y_true, proba[:, 1]))
    return float(roc_auc_score(y_true, proba, multi_class="ovr"))


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def fit_predict_proba(model, X_train, y_train, X_test) -> np.ndarray:
    return model.fit(X_train, y_train).predict_proba(X_test)


def pfn_log_density(seed: int, X_train, y_train, X_test, y_test) -> np.ndarray:
    model = PFNRegressor(checkpoint=CHECKPOINTS["regressor"], random_state=seed)
    return model.fit(X_train, y_train).predict_log_density(X_test, y_test)


def gp_log_density(seed: int, X_train, y_train, X_test, y_test) -> np.ndarray:
    kernel = ConstantKernel() * RBF(length_scale=np.ones(X_train.shape[1])) + WhiteKernel()
    model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed).fit(X_train, y_train)
    mean, std = model.predict(X_test, return_std=True)
    return -gaussian_nll(y_test, mean, std)


def classification() -> dict:
    results: dict = {}
    for data_name, loader in CLASSIFICATION_DATA.items():
        X, y = loader(return_X_y=True)
        per_model: dict = {name: {"auc": [], "log_loss": [], "seconds": []} for name in CLASSIFIERS}
        for seed in range(SPLITS):
            X_train, X_test, y_train, y_test = split(X, y, seed, stratify=True)
            for name, make in CLASSIFIERS.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # LogisticRegression's convergence warnings on raw features
                    proba, seconds = timed(fit_predict_proba, make(seed), X_train, y_train, X_test)
                per_model[name]["auc"].append(auc(y_test, proba))
                per_model[name]["log_loss"].append(
                    float(log_loss(y_test, np.clip(proba, 1e-15, 1), labels=np.unique(y)))
                )
                per_model[name]["seconds"].append(seconds)
        results[data_name] = {
            "rows": int(len(y)),
            "features": int(X.shape[1]),
            "classes": int(len(np.unique(y))),
            "train_rows": int(min(MAX_TRAIN, round(0.7 * len(y)))),
            "models": {
                name: {key: _summary(values) for key, values in metrics.items()} for name, metrics in per_model.items()
            },
        }
        line = ", ".join(
            f"{name} {per_model[name]['auc'] and np.mean(per_model[name]['auc']):.4f}" for name in CLASSIFIERS
        )
        print(f"{data_name}: AUC {line}", flush=True)
    return results


def gp_draws(num_features: int, seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """One dataset from a GP prior: standard-normal inputs, RBF lengthscale 1.5 * sqrt(D / 4), noise 0.1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, num_features))
    lengthscale = 1.5 * np.sqrt(num_features / 4)
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    cov = np.exp(-0.5 * sq / lengthscale**2) + 0.1**2 * np.eye(rows)
    return X, np.linalg.cholesky(cov) @ rng.normal(size=rows)


def gaussian_nll(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return 0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((y - mean) / std) ** 2


def regression() -> dict:
    datasets = {"diabetes": [load_diabetes(return_X_y=True)] * SPLITS}
    datasets["gp_1d"] = [gp_draws(1, seed) for seed in range(SPLITS)]
    datasets["gp_4d"] = [gp_draws(4, 100 + seed) for seed in range(SPLITS)]
    results: dict = {}
    for data_name, draws in datasets.items():
        metrics: dict = {name: {"nll": [], "seconds": []} for name in ("PFNRegressor", "GaussianProcessRegressor")}
        for seed, (X, y) in enumerate(draws):
            X_train, X_test, y_train, y_test = split(X, y, seed, stratify=False)
            scale = y_train.std()

            for name, run in (("PFNRegressor", pfn_log_density), ("GaussianProcessRegressor", gp_log_density)):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # GP optimizer bound warnings
                    log_density, seconds = timed(run, seed, X_train, y_train, X_test, y_test)
                # NLL of the target in units of the training standard deviation: comparable across datasets
                metrics[name]["nll"].append(float(-(log_density + np.log(scale)).mean()))
                metrics[name]["seconds"].append(seconds)
        results[data_name] = {name: {key: _summary(values) for key, values in m.items()} for name, m in metrics.items()}
        pfn_nll, gp_nll = (
            results[data_name]["PFNRegressor"]["nll"]["mean"],
            results[data_name]["GaussianProcessRegressor"]["nll"]["mean"],
        )
        pfn_s, gp_s = (results[data_name][n]["seconds"]["mean"] for n in ("PFNRegressor", "GaussianProcessRegressor"))
        results[data_name]["nll_excess"] = pfn_nll - gp_nll
        results[data_name]["nll_relative_excess"] = (pfn_nll - gp_nll) / abs(gp_nll)
        results[data_name]["speedup"] = gp_s / pfn_s
        print(f"{data_name}: NLL PFN {pfn_nll:.4f} vs GP {gp_nll:.4f}; {pfn_s:.3f} s vs {gp_s:.3f} s", flush=True)
    return results


def large_query(rows: int = 100_000) -> dict:
    """Time and peak-memory growth of predicting 100,000 query rows (chunked under max_memory_mb)."""
    import resource

    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    queries = X[rng.integers(0, len(X), rows)] * rng.normal(1.0, 0.05, size=(rows, X.shape[1]))
    clf = PFNClassifier(checkpoint=CHECKPOINTS["classifier"]).fit(X[:400], y[:400])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    proba, seconds = timed(clf.predict_proba, queries)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "query_rows": rows,
        "train_rows": 400,
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "chunk_rows": clf._query_chunk_rows(),
        "max_memory_mb_setting": clf.max_memory_mb,
        "peak_rss_growth_mb": (after - before) / 1024,
        "all_finite": bool(np.isfinite(proba).all()),
    }
    print(f"{rows} query rows: {seconds:.1f} s, peak RSS growth {report['peak_rss_growth_mb']:.0f} MB", flush=True)
    return report


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def verdict(clf: dict, reg: dict) -> dict:
    def mean_auc(model: str) -> float:
        return float(np.mean([clf[d]["models"][model]["auc"]["mean"] for d in clf]))

    aucs = {model: mean_auc(model) for model in CLASSIFIERS}
    worst_seconds = max(clf[d]["models"]["PFNClassifier"]["seconds"]["mean"] for d in clf)
    return {
        "mean_auc": aucs,
        "must_auc_beats_logreg_and_rf": aucs["PFNClassifier"] > max(aucs["LogisticRegression"], aucs["RandomForest"]),
        "must_fit_predict_under_1s": worst_seconds < 1.0,
        "slowest_pfn_fit_predict_s": worst_seconds,
        "aim_matches_hgb": aucs["PFNClassifier"] >= aucs["HistGradientBoosting"],
        "must_nll_within_5pct_of_gp": all(reg[d]["nll_relative_excess"] <= 0.05 for d in reg),
        "must_10x_faster_than_gp": all(reg[d]["speedup"] >= 10 for d in reg),
    }


def plot(clf: dict, reg: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    names = list(clf)
    width = 0.8 / len(CLASSIFIERS)
    for i, model in enumerate(CLASSIFIERS):
        means = [clf[d]["models"][model]["auc"]["mean"] for d in names]
        stds = [clf[d]["models"][model]["auc"]["std"] for d in names]
        axes[0].bar(np.arange(len(names)) + i * width, means, width, yerr=stds, label=model)
        seconds = [clf[d]["models"][model]["seconds"]["mean"] for d in names]
        axes[1].bar(np.arange(len(names)) + i * width, seconds, width, label=model)
    for ax in axes[:2]:
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    axes[0].set(title="classification: ROC AUC (higher is better)", ylabel="ROC AUC, one-vs-rest (mean ± sd)")
    axes[0].set_ylim(0.85, 1.0)
    axes[1].set(title="fit + predict time (lower is better)", ylabel="seconds (log scale)")
    axes[1].set_yscale("log")
    reg_names = list(reg)
    for i, model in enumerate(("PFNRegressor", "GaussianProcessRegressor")):
        means = [reg[d][model]["nll"]["mean"] for d in reg_names]
        axes[2].bar(np.arange(len(reg_names)) + i * 0.4, means, 0.4, label=model, color=f"C{5 + i}")
    axes[2].axhline(0, color="black", linewidth=0.6)
    axes[2].set_xticks(np.arange(len(reg_names)) + 0.2, reg_names)
    axes[2].set(title="regression: test NLL (lower is better)", ylabel="NLL per row, standardised target")
    axes[2].legend(fontsize=8, loc="upper right")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(CLASSIFIERS), fontsize=8)
    fig.suptitle(f"tabular data sets, mean of {SPLITS} random splits", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    save_figure(fig, path)


def main() -> None:
    global SPLITS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS / "tabular.json")
    parser.add_argument("--splits", type=int, default=SPLITS, help="random train/test splits per data set")
    parser.add_argument("--clf-checkpoint", help="classifier checkpoint name or path (default: tabular-clf-small)")
    parser.add_argument("--reg-checkpoint", help="regressor checkpoint name or path (default: tabular-reg-small)")
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out, no runs")
    args = parser.parse_args()
    if args.replot:
        report = json.loads(args.out.read_text())
        plot(report["classification"], report["regression"], args.out.with_suffix(".png"))
        return
    CHECKPOINTS.update(classifier=args.clf_checkpoint, regressor=args.reg_checkpoint)
    SPLITS = args.splits
    # load (and cache) both checkpoints before any timing
    X, y = load_iris(return_X_y=True)
    _, load_clf = timed(PFNClassifier(checkpoint=CHECKPOINTS["classifier"]).fit, X, y)
    regressor = PFNRegressor(checkpoint=CHECKPOINTS["regressor"])
    _, load_reg = timed(regressor.fit, X, X[:, 0])
    regressor.predict_log_density(X, X[:, 0])  # first-call imports inside torch
    clf = classification()
    reg = regression()
    big = large_query()
    report = {
        "torch_threads": torch.get_num_threads(),
        "first_fit_including_checkpoint_load_s": {"classifier": load_clf, "regressor": load_reg},
        "classification": clf,
        "regression": reg,
        "large_query": big,
        "verdict": verdict(clf, reg),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(clf, reg, args.out.with_suffix(".png"))
    print(json.dumps(report["verdict"], indent=2))


if __name__ == "__main__":
    main()
