"""CalibrationCallback during a Hydra training run, and ``priorfit-eval`` on the checkpoint it wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from priorfit.errors import CheckpointError
from priorfit.evaluate import evaluate_checkpoint
from tests.helpers import TINY_POSTERIOR, train_briefly


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated")
    calibration = ["callbacks=calibration", "callbacks.calibration.every_n_steps=5"]
    calibration += ["callbacks.calibration.num_posteriors=20", "callbacks.calibration.num_samples=50"]
    overrides = ["experiment=sbi_two_moons", *TINY_POSTERIOR, *calibration, "logger=csv", "trainer.max_steps=10"]
    return out, train_briefly(out, overrides)


def test_callback_logs_calibration_statistics_and_figures(calibrated_run):
    out, objects = calibrated_run
    callback = next(c for c in objects["trainer"].callbacks if type(c).__name__ == "CalibrationCallback")
    assert [row["step"] for row in callback.history] == [5, 10]
    log_dir = objects["trainer"].logger.log_dir
    with open(os.path.join(log_dir, "metrics.csv")) as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("calibration/tarp_atc")]
    assert len(rows) == 2
    assert all(0 <= float(row["calibration/tarp_ks_pvalue"]) <= 1 for row in rows)
    assert sorted(f for f in os.listdir(log_dir) if f.endswith(".png")) == [
        "calibration_step10.png",
        "calibration_step5.png",
    ]


def test_priorfit_eval_writes_a_report_for_the_checkpoint(calibrated_run, tmp_path):
    out, _ = calibrated_run
    report = evaluate_checkpoint(
        str(out / "model.safetensors"), num_posteriors=30, num_samples=40, out=str(tmp_path / "report")
    )
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["summary"] == report["summary"]
    assert len(written["tarp"]["ecp"]) == len(written["tarp"]["alpha"]) == 4  # 30 // 10 bins + 1
    assert (tmp_path / "report.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.partial*"))


def test_priorfit_eval_names_what_it_cannot_evaluate(tmp_path):
    from priorfit.checkpoint import export_checkpoint, load_task
    from priorfit.errors import InvalidHyperparameterError

    with pytest.raises(CheckpointError, match="not found"):
        evaluate_checkpoint(str(tmp_path / "missing.ckpt"))
    old = load_task("pfn-gp-1d")  # as exported before models recorded their context sizes
    old.hparams["domain"] = None
    export_checkpoint(old, tmp_path / "old.safetensors")
    with pytest.raises(InvalidHyperparameterError, match="records no num_context range"):
        evaluate_checkpoint(str(tmp_path / "old.safetensors"))
    result = subprocess.run(
        [sys.executable, "-m", "priorfit.evaluate", "ckpt_path=old.safetensors"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "priorfit-eval: error:" in result.stderr and "Traceback" not in result.stderr


def test_callback_refuses_a_task_without_a_posterior():
    from types import SimpleNamespace

    import torch

    from priorfit.errors import InvalidHyperparameterError
    from priorfit.evaluate import CalibrationCallback

    with pytest.raises(InvalidHyperparameterError, match="posterior tasks"):
        CalibrationCallback().setup(None, SimpleNamespace(network=torch.nn.Linear(1, 1)), "fit")
    with pytest.raises(InvalidHyperparameterError, match="every_n_steps"):
        CalibrationCallback(every_n_steps=0)
