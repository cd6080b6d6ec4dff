"""Fit once, predict many: inference time and peak memory with the context cache, against the code before it.

Every measurement runs in a fresh process (so its peak RSS, VmHWM, is its own) on 2 torch threads; the two
versions alternate, so load on the machine hits both alike. "before" is the package as it was before the cache
(the parent of the commit that added it, checked out with ``git worktree`` into a temporary folder and put first
on ``sys.path``); "now" is this checkout. Sections:

- ``tabular``: ``PFNClassifier`` and ``PFNRegressor`` (8 members, bundled checkpoints) fitted on a 1,000-row,
  8-feature table, then ``predict_proba`` / ``predict`` of Q query rows (the regressor at most 20,000: before
  the cache it held every member's bucket logits for all queries, 20 GB at 100,000); the predictions of both
  versions are compared (the regressor's point predictions differ by design since commit 4f8b5f5, which bounds the
  tail buckets' means, so its row compares time and memory);
- ``gp``: ``pfn-gp-1d`` given 1,000 / 5,000 / 10,000 context points answers 1,000 queries: one ``predictive``
  call before and now (now it runs through the cache, attention in row blocks), and ``condition`` once +
  ``predictive`` of the queries in 10 batches of 100;
- ``curves``: 1,000 learning curves (10 observed epochs each) fitted and extrapolated in one call.

The tabular section also records the classifier's floor: the multiply-adds its queries need whatever the code
(each query row of each member through every layer, attending to the whole context, and the decoder; counted from
the network's shape), the machine's float32 rate on a 1,024³ matrix product in the same run, and so the seconds
those products would take at that rate and the largest speedup over "before" that any implementation of the same
arithmetic could reach on this machine.

    python benchmarks/inference.py                    # all sections -> benchmarks/results/inference.{json,png}
    python benchmarks/inference.py --queries 20000    # a quicker tabular section
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import save_figure, write_json  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE_COMMIT = "e400256"  # the commit that added the context cache; "before" is its parent
REGRESSOR_QUERIES = 20_000

PROBE_HEAD = """
import json, sys, time, warnings
sys.path.insert(0, {source!r})
import numpy as np, torch
torch.set_num_threads(2)
warnings.simplefilter("ignore")
import priorfit
assert priorfit.__file__.startswith({source!r}), priorfit.__file__
def peak_mb():
    line = [l for l in open("/proc/self/status").read().splitlines() if l.startswith("VmHWM:")][0]
    return int(line.split()[1]) / 1024
"""

TABULAR = """
rng = np.random.default_rng(0)
X = rng.normal(size=(1000, 8)); Q = rng.normal(size=({queries}, 8))
if {classifier}:
    model = priorfit.PFNClassifier().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1))
    predict = model.predict_proba
else:
    model = priorfit.PFNRegressor().fit(X, X @ rng.normal(size=8) + 0.1 * rng.normal(size=1000))
    predict = model.predict
start = time.perf_counter(); out = predict(Q); seconds = time.perf_counter() - start
np.save({save!r}, out)
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb()}}))
"""

GP = """
model = priorfit.load("pfn-gp-1d")
generator = torch.Generator().manual_seed(0)  # inputs of the prior's scale (an exact GP draw of 11,000 points
x = torch.rand(1, {context} + 1000, 1, generator=generator)  # would need its own gigabytes)
y = torch.sin(6 * x[..., 0]) + 0.05 * torch.randn(1, {context} + 1000, generator=generator)
xc, yc, xq = x[:, :{context}], y[:, :{context}], x[:, {context}:]
model.predictive(xc[:, :10], yc[:, :10], xq[:, :10])  # warm-up
start = time.perf_counter()
if {cached}:
    conditioned = model.condition(xc, yc)
    means = torch.cat([conditioned.predictive(part).mean for part in xq.split(100, dim=1)], dim=1)
else:
    means = model.predictive(xc, yc, xq).mean
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb(), "mean_of_means": float(means.mean())}}))
"""

CURVES = """
rng = np.random.default_rng(0)
epochs = np.arange(1, 11)
rates = rng.uniform(0.1, 0.5, size=(1000, 1))
curves = 0.3 + 0.5 * (1 - np.exp(-rates * epochs))
start = time.perf_counter()
bands = priorfit.LearningCurveExtrapolator().fit(epochs, curves).predict_quantiles([20, 50, 100], [0.05, 0.5, 0.95])
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_mb": peak_mb(), "shape": list(bands.shape)}}))
"""


def run(source: Path, body: str, **fields) -> dict:
    code = PROBE_HEAD.format(source=str(source)) + body.format(**fields)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def before_checkout(folder: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), f"{CACHE_COMMIT}~1"],
        check=True,
        capture_output=True,
    )
    return folder


def query_multiply_adds(network, num_context: int) -> int:
    """Multiply-adds of one query row through a ``PFNTransformer`` whose context is ``num_context`` rows: per layer
    the query projection, attention scores and weighted values over the context, output projection and MLP; then
    the decoder (the context's own pass is paid once per fit and left out)."""
    per_layer = 0
    for layer in network.layers:
        d_model, d_ff = layer.to_q.in_features, layer.ff[0].out_features
        per_layer += 2 * d_model * d_model + 2 * num_context * d_model + 2 * d_model * d_ff
    first, last = network.decoder[0], network.decoder[-1]
    encoder = network.x_encoder.in_features * network.x_encoder.out_features
    return encoder + per_layer + first.in_features * first.out_features + last.in_features * last.out_features


def classifier_floor(queries: int, before_seconds: float) -> dict:
    """The classifier's query arithmetic and the seconds it takes at this machine's matrix-product rate."""
    import numpy as np
    import torch
    from train_step_profile import gemm_gflops

    import priorfit

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 8))
    model = priorfit.PFNClassifier().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1))
    members, num_context = model.context_x_.shape[:2]
    flops = 2 * query_multiply_adds(model.model_.network, num_context) * members * queries
    gflops = gemm_gflops()
    floor_seconds = flops / (gflops * 1e9)
    return {
        "members": members,
        "context_rows": num_context,
        "query_flops": flops,
        "gemm_1024_gflops": gflops,
        "seconds_at_gemm_rate": floor_seconds,
        "largest_speedup_over_before": before_seconds / floor_seconds,
    }


def tabular(before: Path, queries: int, work: Path) -> dict:
    import numpy as np

    rows = {}
    for name, classifier in (("classifier", True), ("regressor", False)):
        # the regressor before the cache held (members, queries, buckets) in float32 and three float64 copies:
        # 20 GB at 100,000 queries, more than this machine has; it runs at most REGRESSOR_QUERIES
        count = queries if classifier else min(queries, REGRESSOR_QUERIES)
        runs = {}
        order = ("before", "now") if classifier else ("now", "before")  # alternate which goes first
        for version in order:
            source = before if version == "before" else ROOT
            save = work / f"{name}_{version}.npy"
            runs[version] = run(source, TABULAR, queries=count, classifier=classifier, save=str(save))
            print(name, version, runs[version], flush=True)
        difference = np.abs(np.load(work / f"{name}_now.npy") - np.load(work / f"{name}_before.npy")).max()
        rows[name] = {
            "queries": count,
            **runs,
            "speedup": runs["before"]["seconds"] / runs["now"]["seconds"],
            "max_abs_prediction_difference": float(difference),
        }
    floor = classifier_floor(queries, rows["classifier"]["before"]["seconds"])
    print("classifier floor", floor, flush=True)
    return {"table_rows": 1000, "features": 8, "members": 8, "queries": queries, "models": rows, "floor": floor}


def gp(before: Path) -> dict:
    rows = {}
    for context in (1000, 5000, 10_000):
        rows[str(context)] = {
            "before_predictive": run(before, GP, context=context, cached=False),
            "now_predictive": run(ROOT, GP, context=context, cached=False),
            "now_condition_then_10_batches": run(ROOT, GP, context=context, cached=True),
        }
        print("gp", context, rows[str(context)], flush=True)
    return {"queries": 1000, "contexts": rows}


def curves(before: Path) -> dict:
    rows = {version: run(source, CURVES) for version, source in (("before", before), ("now", ROOT))}
    print("curves", rows, flush=True)
    return {"curves": 1000, "observed_epochs": 10, **rows}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    tab = report.get("tabular")
    if tab:
        names = list(tab["models"])
        for offset, version in ((-0.2, "before"), (0.2, "now")):
            values = [tab["models"][n][version]["seconds"] for n in names]
            left.bar([i + offset for i in range(len(names))], values, width=0.4, label=version)
        left.set_xticks(range(len(names)), [f"{n}\n{tab['models'][n]['queries']:,} queries" for n in names])
        top = max(tab["models"][n][v]["seconds"] for n in names for v in ("before", "now"))
        left.set(ylabel="seconds to predict", title="1,000-row table, 8 members", ylim=(0, 1.25 * top))
        left.legend(loc="upper right")
    gp_rows = report.get("gp", {}).get("contexts", {})
    if gp_rows:
        contexts = list(gp_rows)
        cases = (
            ("before_predictive", "before: predictive"),
            ("now_predictive", "now: predictive"),
            ("now_condition_then_10_batches", "now: condition + 10 batches"),
        )
        for offset, (key, label) in zip((-0.27, 0.0, 0.27), cases):
            values = [gp_rows[c][key]["peak_mb"] for c in contexts]
            right.bar([i + offset for i in range(len(contexts))], values, width=0.27, label=label)
        right.set_xticks(range(len(contexts)), [f"{int(c):,} context" for c in contexts])
        top = max(gp_rows[c][key]["peak_mb"] for c in contexts for key, _ in cases)
        right.set(ylabel="peak memory of the process (MB)", title="pfn-gp-1d, 1,000 queries", ylim=(0, 1.45 * top))
        right.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--sections", nargs="+", default=["tabular", "gp", "curves"])
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON")
    args = parser.parse_args()
    stem = "inference" if args.queries == 100_000 else f"inference_{args.queries}"
    if args.plot_only:
        plot(json.loads((RESULTS / f"{stem}.json").read_text()), RESULTS / f"{stem}.png")
        return
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "threads": 2,
        "load_average_start": list(os.getloadavg()),
        "before": f"{CACHE_COMMIT}~1",
        "now": "this checkout",
    }
    with tempfile.TemporaryDirectory() as scratch:
        before = before_checkout(Path(scratch) / "before")
        try:
            if "tabular" in args.sections:
                report["tabular"] = tabular(before, args.queries, Path(scratch))
            if "gp" in args.sections:
                report["gp"] = gp(before)
            if "curves" in args.sections:
                report["curves"] = curves(before)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    report["load_average_end"] = list(os.getloadavg())
    write_json(report, RESULTS / f"{stem}.json")
    plot(report, RESULTS / f"{stem}.png")


if __name__ == "__main__":
    main()
