"""What a newcomer waits for, each in a fresh process: ``import priorfit``, a first tabular prediction with the
bundled classifier, ``priorfit-train --help``, and (``--train``) the default ``priorfit-train`` run (gp_tiny).

    python benchmarks/first_run.py            # writes benchmarks/results/first_run.json
    python benchmarks/first_run.py --train    # also times the default training run (a few minutes)
    python benchmarks/first_run.py --under-load   # the test suite idle and beside a 2-thread torch job
    python benchmarks/first_run.py --thread-variants tests/test_posterior.py   # thread settings beside that job

Times are wall-clock seconds of the whole process (interpreter start included), the median of ``--repeats``
runs, with the machine's load average recorded beside them. ``--under-load`` runs the default test command
(``python -m pytest -q``) once on the idle machine and once while another process runs a 2-thread torch matmul
loop, and reports the ratio (issue: at most 2x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_json  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIRST_PREDICTION = """
import priorfit
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True)
priorfit.PFNClassifier().fit(X[:400], y[:400]).predict_proba(X[400:])
"""
SUITE = [sys.executable, "-m", "pytest", "-q", "--durations=20"]
BUSY_LOOP = """
import torch
torch.set_num_threads(2)
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a / 512)
"""


def without_machine_paths(text: str) -> str:
    """Output with this machine's folders named as the repository, <python> or <tmp> (results name no machine)."""
    for folder, name in ((ROOT, ""), (Path(sys.prefix), "<python>/"), (Path(tempfile.gettempdir()), "<tmp>/")):
        text = text.replace(f"{folder}/", name)
    return text


def timed(
    command: list[str], cwd: Path | None = None, env: dict | None = None, tail_lines: int = 15
) -> tuple[float, int, str]:
    """Wall seconds, exit status and the output's last lines (a failing run is reported, not hidden)."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-tail_lines:])
    return time.perf_counter() - started, result.returncode, without_machine_paths(tail)


def median_time(command: list[str], repeats: int, **kwargs) -> dict:
    runs = [timed(command, **kwargs) for _ in range(repeats)]
    times = [seconds for seconds, _, _ in runs]
    failed = [tail for _, status, tail in runs if status != 0]
    return {"median_seconds": statistics.median(times), "seconds": times, "failed_output": failed}


def suite_time(env: dict) -> dict:
    """One default test run, with its slowest tests (to see which ones the load slows most)."""
    seconds, status, tail = timed(SUITE, cwd=ROOT, env=env, tail_lines=40)
    return {"seconds": seconds, "status": status, "output_tail": tail}


def under_load() -> dict:
    env = {**os.environ}
    env.pop("PRIORFIT_THREADS", None)
    idle = {"load_average_start": list(os.getloadavg()), **suite_time(env)}
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(75)  # the 1-minute load average sees the other job, as it would on a shared machine
        loaded = {"load_average_start": list(os.getloadavg()), **suite_time(env)}
    finally:
        busy.kill()
    ratio = loaded["seconds"] / idle["seconds"]
    return {"idle": idle, "beside_a_2_thread_job": loaded, "ratio": ratio, "within_2x": ratio <= 2}


# thread settings of the test run beside a busy job: priorfit's default (the free cores), all cores with OpenMP
# threads that spin while they wait (libgomp's default) or sleep (PASSIVE, set before torch loads)
THREAD_VARIANTS = {
    "default (free cores)": {},
    "2 threads, spinning": {"PRIORFIT_THREADS": "2"},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"PRIORFIT_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
}


def thread_variants(tests: list[str]) -> dict:
    """A part of the suite (``tests``) idle and beside the busy job under each of THREAD_VARIANTS, alternating."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    base = {key: value for key, value in os.environ.items() if key not in ("PRIORFIT_THREADS", "OMP_WAIT_POLICY")}
    report: dict = {"tests": tests, "variants": {}}
    for loaded in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if loaded else None
        try:
            if busy is not None:
                time.sleep(75)
            for name, settings in THREAD_VARIANTS.items():
                seconds, status, tail = timed(command, cwd=ROOT, env={**base, **settings})
                row = report["variants"].setdefault(name, {})
                row["loaded" if loaded else "idle"] = {"seconds": seconds, "status": status}
                if status:
                    row["failed_output"] = tail
        finally:
            if busy is not None:
                busy.kill()
    for row in report["variants"].values():
        row["ratio"] = row["loaded"]["seconds"] / row["idle"]["seconds"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also time the default priorfit-train run")
    parser.add_argument("--under-load", action="store_true", help="time the test suite idle and beside a busy job")
    parser.add_argument(
        "--thread-variants",
        nargs="+",
        metavar="TEST",
        help="time these tests idle and beside a busy job under each thread setting (THREAD_VARIANTS)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.thread_variants:
        out = args.out or RESULTS / "threads_under_load.json"
        write_json({"load_average_start": list(os.getloadavg()), **thread_variants(args.thread_variants)}, out)
        return
    if args.under_load:
        out = args.out or RESULTS / "suite_under_load.json"
        write_json({"command": "python -m pytest -q --durations=20", **under_load()}, out)
        return
    out = args.out or RESULTS / "first_run.json"
    report: dict = {"load_average_start": list(os.getloadavg()), "cpus": len(os.sched_getaffinity(0))}
    python = sys.executable
    report["import_priorfit"] = median_time([python, "-c", "import priorfit"], args.repeats)
    report["import_and_first_tabular_prediction"] = median_time([python, "-c", FIRST_PREDICTION], args.repeats)
    train = str(Path(python).parent / "priorfit-train")
    report["priorfit_train_help"] = median_time([train, "--help"], args.repeats)
    if args.train:
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "PRIORFIT_RUNS_DIR": folder}
            report["priorfit_train_default"] = median_time([train], 1, cwd=Path(folder), env=env)
    report["load_average_end"] = list(os.getloadavg())
    report["first_prediction_under_3s"] = report["import_and_first_tabular_prediction"]["median_seconds"] < 3
    write_json(report, out)
    print(report)


if __name__ == "__main__":
    main()
