"""Inference latency and peak memory, 1,000 context + 1,000 query points, priorfit vs pfns 0.4.2.

Each measurement runs in a fresh process and reads that process's own peak RSS (VmHWM). Latency and
memory do not depend on the weights, so pfns is measured on a freshly built model of the same
configuration as in `gp_exact_gap.py`; priorfit on the bundled `pfn-gp-1d`.

    python benchmarks/inference_memory.py --pfns-python /path/to/pfns-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PFNS_PROBE = """
import json, sys, torch
sys.path.insert(0, {bench!r})
from pfns_reference import build_config, inference_latency
torch.set_num_threads(2)
model = build_config(1, 64, 1e-3, 1000, 1).model.create_model()
before = [l for l in open('/proc/self/status').read().splitlines() if l.startswith('VmRSS:')][0].split()[1]
latency = inference_latency(model)
hwm = [l for l in open('/proc/self/status').read().splitlines() if l.startswith('VmHWM:')][0].split()[1]
print(json.dumps({{"latency_1000ctx_1000query_s": latency, "peak_rss_mb": int(hwm) / 1024,
                  "rss_mb_before_inference": int(before) / 1024}}))
"""

PRIORFIT_PROBE = """
import json, time, torch
torch.set_num_threads(2)
from priorfit.checkpoint import load_task
model = load_task("pfn-gp-1d")
before = [l for l in open('/proc/self/status').read().splitlines() if l.startswith('VmRSS:')][0].split()[1]
batch = model.prior.sample(1, 2000, generator=torch.Generator().manual_seed(1))
xc, yc, xq = batch.x[:, :1000], batch.y[:, :1000], batch.x[:, 1000:]
with torch.no_grad():
    model(xc, yc, xq)
    times = []
    for _ in range(5):
        start = time.perf_counter(); model(xc, yc, xq); times.append(time.perf_counter() - start)
hwm = [l for l in open('/proc/self/status').read().splitlines() if l.startswith('VmHWM:')][0].split()[1]
print(json.dumps({"latency_1000ctx_1000query_s": min(times), "peak_rss_mb": int(hwm) / 1024,
                  "rss_mb_before_inference": int(before) / 1024}))
"""


def run(python: str, code: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pfns-python", required=True)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference_memory.json"))
    args = parser.parse_args()
    results = {
        "benchmark": "inference_memory",
        "setting": "one dataset, 1,000 context + 1,000 query points, 1-D GP inputs, 2 threads, no grad",
        "priorfit": run(sys.executable, PRIORFIT_PROBE),
        "pfns": run(args.pfns_python, PFNS_PROBE.format(bench=str(ROOT / "benchmarks"))),
    }
    for tool in ("priorfit", "pfns"):
        r = results[tool]
        r["inference_extra_mb"] = r["peak_rss_mb"] - r["rss_mb_before_inference"]
    results["latency_ratio_pfns_over_priorfit"] = (
        results["pfns"]["latency_1000ctx_1000query_s"] / results["priorfit"]["latency_1000ctx_1000query_s"]
    )
    Path(args.out).write_text(json.dumps(results, indent=1))
    plot(results, Path(args.out).with_suffix(".png"))
    print(json.dumps(results, indent=1))


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = ["priorfit", "pfns"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    left.bar(tools, [results[t]["latency_1000ctx_1000query_s"] * 1000 for t in tools], color=["C0", "C1"])
    left.set_ylabel("latency (ms)")
    right.bar(tools, [results[t]["inference_extra_mb"] for t in tools], color=["C0", "C1"])
    right.set_ylabel("peak RSS added by inference (MB)")
    fig.suptitle("1,000 context + 1,000 query points, CPU, 2 threads")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
