"""PFNRegressor where the target is an exact function of the features, and where a query leaves the training range.

Exact relations (issue 26): synthetic tables whose target is a linear function of 2, 4 or 8 of their columns (plus
two unused columns), budget shares (the fourth share is one minus the other three), a difference of two columns,
a product, and weight / height². The target is recorded to about three significant digits (Gaussian noise of
1e-3 of its spread), as a column computed from others and rounded would be. 200 training and 200 test rows per
split, 5 splits. Ridge (RidgeCV over alphas 1e-8..1e2; NLL from a Gaussian with the training residuals' standard
deviation) and a GP (constant × ARD RBF + white noise down to 1e-10, marginal likelihood, normalize_y) are the
references. RMSE and NLL are in units of the training targets' standard deviation, so cases compare.

Far-out queries: y = x0 + x1 and the right-skewed y = exp(1.5 x0) + x1, 200 training rows on [-1, 1]², queries
with x0 from 1.2 to 20 (20 % to 20× beyond the training maximum): the predict() mean (tail buckets bounded, the
default), the mean under the density's half-normal tails (what predict() returned before), the median and the
truth.

Resolution: the width of the bar distribution's bucket at standardised targets -3..3 and the NLL floor it sets.

Ordinary tables: ``benchmarks/tabular.py``'s regression tables (diabetes, 1-D and 4-D GP draws), to check a
change for exact relations costs nothing there.

    python benchmarks/exact_relations.py [--checkpoint NAME_OR_PATH] [--out benchmarks/results/exact_relations.json]
    python benchmarks/exact_relations.py --sections far_queries   # rerun one section, keep the others
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import tabular
import torch
from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import RidgeCV

from priorfit.estimators import PFNRegressor

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = 5
ROWS = 200
RECORDING_NOISE = 1e-3


def _linear(used: int):
    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        X = rng.normal(size=(2 * ROWS, used + 2))
        return X, X[:, :used] @ rng.normal(size=used)

    return draw


def _shares(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shares = rng.dirichlet(np.ones(4), size=2 * ROWS)
    return np.column_stack([shares[:, :3], rng.uniform(size=2 * ROWS)]), shares[:, 3]


def _difference(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(50, 10, size=(2 * ROWS, 3))
    return X, X[:, 0] - X[:, 1]


def _product(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(1, 3, size=(2 * ROWS, 3))
    return X, X[:, 0] * X[:, 1]


def _bmi(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    weight, height = rng.normal(70, 12, 2 * ROWS), rng.normal(1.7, 0.1, 2 * ROWS)
    return np.column_stack([weight, height, rng.normal(40, 12, 2 * ROWS)]), weight / height**2


CASES = {
    "linear_2": (_linear(2), "linear"),
    "linear_4": (_linear(4), "linear"),
    "linear_8": (_linear(8), "linear"),
    "shares": (_shares, "linear"),
    "difference": (_difference, "linear"),
    "product": (_product, "nonlinear"),
    "weight_over_height_squared": (_bmi, "nonlinear"),
}


def gaussian_nll(y: np.ndarray, mean: np.ndarray, std: np.ndarray | float) -> np.ndarray:
    return 0.5 * np.log(2 * np.pi * np.square(std)) + 0.5 * np.square((y - mean) / std)


def ridge(X_train, y_train, X_test, y_test) -> tuple[np.ndarray, np.ndarray]:
    model = RidgeCV(alphas=np.logspace(-8, 2, 21)).fit(X_train, y_train)
    residual = y_train - model.predict(X_train)
    std = max(np.sqrt(residual @ residual / (len(y_train) - X_train.shape[1] - 1)), 1e-12)
    mean = model.predict(X_test)
    return mean, -gaussian_nll(y_test, mean, std)


def gp(X_train, y_train, X_test, y_test) -> tuple[np.ndarray, np.ndarray]:
    kernel = ConstantKernel() * RBF(length_scale=np.ones(X_train.shape[1]), length_scale_bounds=(1e-2, 1e4))
    kernel += WhiteKernel(noise_level=1e-4, noise_level_bounds=(1e-10, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optimizer bound warnings
        model = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0).fit(X_train, y_train)
    mean, std = model.predict(X_test, return_std=True)
    return mean, -gaussian_nll(y_test, mean, np.maximum(std, 1e-12))


# --numeric-transforms: the members' views (PFNRegressor's default mixes three standardised views and a quantile one)
TRANSFORMS: dict = {}


def pfn(checkpoint: str | None, seed: int):
    def run(X_train, y_train, X_test, y_test) -> tuple[np.ndarray, np.ndarray]:
        model = PFNRegressor(checkpoint=checkpoint, random_state=seed, **TRANSFORMS).fit(X_train, y_train)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # out-of-domain notes on a few test rows
            return model.predict(X_test), model.predict_log_density(X_test, y_test)

    return run


def exact_cases(checkpoint: str | None) -> dict:
    results: dict = {}
    for name, (draw, kind) in CASES.items():
        metrics: dict = {model: {"rmse": [], "nll": [], "seconds": []} for model in ("PFNRegressor", "Ridge", "GP")}
        for seed in range(SPLITS):
            rng = np.random.default_rng(1000 * seed + len(name))
            X, f = draw(rng)
            y = f + RECORDING_NOISE * f.std() * rng.normal(size=len(f))
            X_train, X_test, y_train, y_test = X[:ROWS], X[ROWS:], y[:ROWS], y[ROWS:]
            scale = y_train.std()
            for model, run in (("PFNRegressor", pfn(checkpoint, seed)), ("Ridge", ridge), ("GP", gp)):
                started = time.perf_counter()
                mean, log_density = run(X_train, y_train, X_test, y_test)
                metrics[model]["seconds"].append(time.perf_counter() - started)
                metrics[model]["rmse"].append(float(np.sqrt(np.mean((mean - y_test) ** 2)) / scale))
                metrics[model]["nll"].append(float(-(log_density + np.log(scale)).mean()))
        summary = {model: {key: float(np.mean(v)) for key, v in m.items()} for model, m in metrics.items()}
        reference = "Ridge" if kind == "linear" else "GP"
        ratio = summary["PFNRegressor"]["rmse"] / summary[reference]["rmse"]
        results[name] = {
            "kind": kind,
            "reference": reference,
            "mean": summary,
            "per_split": metrics,
            "rmse_ratio_to_reference": ratio,
            "meets_bar": bool(ratio <= 2 and summary["PFNRegressor"]["nll"] <= -3),
        }
        line = ", ".join(f"{m} RMSE {s['rmse']:.2g} NLL {s['nll']:.2f}" for m, s in summary.items())
        print(f"{name}: {line}", flush=True)
    return results


FAR_TABLES = {  # y as a function of (x0, x1); training rows on [-1, 1]^2
    "sum": lambda x0, x1: x0 + x1,
    "exponential": lambda x0, x1: np.exp(1.5 * x0) + x1,  # right-skewed: far queries land in the upper tail bucket
}


def far_queries(checkpoint: str | None) -> dict:
    report = {}
    for name, target in FAR_TABLES.items():
        rng = np.random.default_rng(0)
        X = rng.uniform(-1, 1, size=(ROWS, 2))
        y = target(X[:, 0], X[:, 1])
        model = PFNRegressor(checkpoint=checkpoint).fit(X, y)
        reach = np.array([1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0])
        queries = np.column_stack([reach, np.full_like(reach, 0.9)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # every one of these rows is outside the training range: the point
            full = model.predict(queries, output_type="full")
        log_probs = torch.as_tensor(np.log(np.clip(full["probabilities"], 1e-300, None)))
        wide_mean = model.head_.mean(log_probs).numpy() * model.y_scale_ + model.y_mean_
        report[name] = {
            "x0": reach.tolist(),
            "truth": target(queries[:, 0], queries[:, 1]).tolist(),
            "mean": full["mean"].tolist(),
            "mean_with_half_normal_tails": wide_mean.tolist(),
            "median": full["median"].tolist(),
            "training_y_range": [float(y.min()), float(y.max())],
            "training_y_mean_and_std": [float(y.mean()), float(y.std())],
        }
    return report


def ordinary_tables(checkpoint: str | None) -> dict:
    tabular.CHECKPOINTS["regressor"] = checkpoint
    return {
        name: {"pfn_nll": r["PFNRegressor"]["nll"]["mean"], "gp_nll": r["GaussianProcessRegressor"]["nll"]["mean"]}
        for name, r in tabular.regression().items()
    }


def resolution(checkpoint: str | None) -> dict:
    """Width of the bucket holding a standardised target y, and the NLL floor it sets (all mass in that bucket):
    whether the head can express a residual of 1e-3 of the target's spread at all."""
    import math

    borders = PFNRegressor(checkpoint=checkpoint)._load_model().head.borders.double()
    rows = []
    for y in (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0):
        width = float(borders.diff()[int(torch.searchsorted(borders, torch.tensor(y, dtype=torch.float64))) - 1])
        rows.append({"standardised_y": y, "bucket_width": width, "nll_floor": math.log(width)})
    return {"num_buckets": len(borders) - 1, "by_y": rows}


SECTIONS = {
    "exact": exact_cases,
    "far_queries": far_queries,
    "ordinary_tables": ordinary_tables,
    "resolution": resolution,
}


def plot(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    cases = list(report["exact"])
    positions = np.arange(len(cases))
    for offset, model in zip((-0.27, 0, 0.27), ("PFNRegressor", "Ridge", "GP")):
        values = [report["exact"][c]["mean"][model]["rmse"] for c in cases]
        left.bar(positions + offset, values, width=0.27, label=model)
    left.set_yscale("log")
    left.set_xticks(positions, [c.replace("_", " ") for c in cases], rotation=30, ha="right")
    left.set_ylabel("test RMSE / training std of y")
    left.set_title("Targets that are exact functions of the columns")
    left.legend(loc="upper left", fontsize=8)
    far = report["far_queries"]["exponential"]
    right.plot(far["x0"], far["truth"], "k--", label="truth exp(1.5 x0) + x1")
    right.axhline(far["training_y_range"][1], color="grey", lw=0.8, ls=":")
    right.plot(far["x0"], far["mean"], "o-", label="predict() mean")
    right.plot(far["x0"], far["mean_with_half_normal_tails"], "s:", label="mean with the density's tails")
    right.plot(far["x0"], far["median"], "^-", label="median")
    right.axvline(1.0, color="grey", lw=0.8)
    right.text(0.02, 0.02, "grey: training max of x0 (line), of y (dotted)", color="grey", transform=right.transAxes)
    right.set_xscale("log")
    right.set_ylim(far["training_y_range"][0] - 1, 2.5 * max(far["mean_with_half_normal_tails"]))
    right.set_xlabel("query x0 (training rows: x0, x1 in [-1, 1])")
    right.set_ylabel("prediction")
    right.set_title("A query beyond the training range")
    right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="regressor checkpoint name or path (default: tabular-reg-small)")
    parser.add_argument("--out", type=Path, default=RESULTS / "exact_relations.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--numeric-transforms", nargs="+", help="PFNRegressor's member views, e.g. standard")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.numeric_transforms:
        TRANSFORMS["numeric_transforms"] = tuple(args.numeric_transforms)
    report = json.loads(args.out.read_text()) if set(args.sections) != set(SECTIONS) and args.out.exists() else {}
    report.update(checkpoint=args.checkpoint or "tabular-reg-small", torch_threads=args.threads, **TRANSFORMS)
    for section in args.sections:  # sections not named are kept from --out
        report[section] = SECTIONS[section](args.checkpoint)
    write_json(report, args.out)
    if "exact" in report and "far_queries" in report:
        plot(report, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
