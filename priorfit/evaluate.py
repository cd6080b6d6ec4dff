"""Calibration of trained amortized posteriors: a Lightning callback and the ``priorfit-eval`` CLI.

Both draw held-out (θ, x) pairs, sample the posterior for each x, and run TARP and SBC
(``priorfit.diagnostics``) on the samples. The callback logs the statistics and a figure to the run's logger
every k steps; ``priorfit-eval ckpt_path=...`` writes a JSON + PNG report for any posterior checkpoint (for a PFN or
Distribution Transformer checkpoint: a fresh calibration card, ``priorfit.card``), beside the card stored in it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from pathlib import Path

import hydra
import matplotlib
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import Tensor

from priorfit._files import atomic_write
from priorfit.diagnostics import SBCResult, TarpResult, sbc, tarp
from priorfit.errors import CheckpointError, InvalidHyperparameterError, PriorfitError
from priorfit.networks.modes import evaluating
from priorfit.networks.sampling import posterior_samples

__all__ = ["CalibrationCallback", "calibration_report", "posterior_samples", "held_out_pairs", "main"]


def held_out_pairs(task, trainer: pl.Trainer | None, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """θ (count, Dθ), x (count, n, Dx): the validation simulations when there are any, else fresh prior draws."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    val_set = getattr(datamodule, "val_set", None)
    if val_set is not None and len(val_set) >= 2:
        rows = torch.as_tensor(val_set.indices[:count])
        return datamodule.theta[rows], datamodule.x[rows]
    from priorfit.tasks.posterior import SimulationShapes

    if isinstance(task.prior, SimulationShapes) or not hasattr(task.prior, "sample"):
        raise InvalidHyperparameterError(
            "this posterior was trained on given simulations and carries no simulator to draw held-out pairs "
            "from: run priorfit.diagnostics.tarp / sbc on your own held-out (θ, x) and posterior samples"
        )
    batch = task.prior.sample(count, 1, generator=torch.Generator().manual_seed(seed))
    return batch.theta, batch.x


def calibration_report(network, theta: Tensor, x: Tensor, *, num_samples: int = 1000, seed: int = 0):
    """TARP and SBC of ``network``'s posteriors for held-out pairs (θ (B, Dθ), x (B, n, Dx))."""
    samples = posterior_samples(network, x, num_samples)
    return tarp(samples, theta, seed=seed), sbc(samples, theta, seed=seed)


def report_figure(tarp_result: TarpResult, sbc_result: SBCResult, title: str = ""):
    """One figure: the TARP curve and the SBC ECDF differences."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    tarp_result.plot(left)
    sbc_result.plot(right, kind="ecdf")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def report_metrics(tarp_result: TarpResult, sbc_result: SBCResult, prefix: str = "calibration/") -> dict[str, float]:
    return {
        f"{prefix}tarp_atc": tarp_result.atc,
        f"{prefix}tarp_ks_pvalue": tarp_result.ks_pvalue,
        f"{prefix}tarp_max_deviation": tarp_result.max_deviation,
        f"{prefix}sbc_min_ks_pvalue": float(sbc_result.ks_pvalues.min()),
    }


class CalibrationCallback(pl.Callback):
    """Runs TARP and SBC on held-out simulations every ``every_n_steps`` training steps (and at the end).

    Logs ``calibration/tarp_atc``, ``tarp_ks_pvalue``, ``tarp_max_deviation`` and ``sbc_min_ks_pvalue`` and
    a figure: to wandb as an image (offline runs keep it in the run folder), to other loggers as a PNG in
    their log directory. Held-out pairs are the validation simulations (or fresh prior draws).
    """

    def __init__(
        self, every_n_steps: int = 1000, num_posteriors: int = 200, num_samples: int = 1000, seed: int = 0
    ) -> None:
        super().__init__()
        if every_n_steps < 1 or num_posteriors < 2 or num_samples < 2:
            raise InvalidHyperparameterError("every_n_steps >= 1, num_posteriors >= 2 and num_samples >= 2 needed")
        self.every_n_steps, self.num_posteriors, self.num_samples, self.seed = (
            every_n_steps,
            num_posteriors,
            num_samples,
            seed,
        )
        self.history: list[dict[str, float]] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        network = getattr(pl_module, "network", None)
        if not hasattr(network, "has_density"):  # posterior networks declare it
            raise InvalidHyperparameterError(
                f"CalibrationCallback checks posterior tasks (TARP and SBC of θ); {type(pl_module).__name__} is not one"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 and trainer.global_step > 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.history or self.history[-1]["step"] != trainer.global_step:
            self.evaluate(trainer, pl_module)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        if not trainer.is_global_zero:
            return {}
        theta, x = held_out_pairs(pl_module, trainer, self.num_posteriors, self.seed)
        with evaluating(pl_module), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            device = pl_module.device
            tarp_result, sbc_result = calibration_report(
                pl_module.network, theta.to(device), x.to(device), num_samples=self.num_samples, seed=self.seed
            )
        metrics = report_metrics(tarp_result, sbc_result)
        step = trainer.global_step
        self.history.append({"step": step, **metrics})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            _log_figure(logger, report_figure(tarp_result, sbc_result, f"step {step}"), step)
        return metrics


def _log_figure(logger, fig, step: int) -> None:
    import matplotlib.pyplot as plt

    try:
        from pytorch_lightning.loggers import WandbLogger

        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({"calibration/figure": wandb.Image(fig), "trainer/global_step": step})
            return
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            path = Path(log_dir) / f"calibration_step{step}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            _save_figure(fig, path)
    finally:
        plt.close(fig)


def _save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda temp: fig.savefig(temp, dpi=110, format="png"))


def _write_json(data: dict, path: Path) -> None:
    atomic_write(path, lambda temp: temp.write_text(json.dumps(data, indent=2) + "\n"))


def evaluate_checkpoint(
    ckpt_path: str,
    *,
    num_posteriors: int = 200,
    num_samples: int = 1000,
    seed: int = 0,
    out: str | None = None,
    trusted_targets: Collection[str] = (),
) -> dict:
    """Calibration report (JSON + PNG) of a checkpoint; returns the JSON content. A posterior gets TARP and SBC on
    ``num_posteriors`` fresh prior draws; a PFN or Distribution Transformer a fresh calibration card
    (``priorfit.card``) on that many held-out prior data sets. The report keeps the card stored in the file beside.

    ``trusted_targets``: your own prior classes the checkpoint names (see ``priorfit.load``).
    """
    from priorfit.checkpoint import load_task
    from priorfit.tasks.posterior import PosteriorTask

    task = load_task(ckpt_path, trusted_targets=trusted_targets)
    # next to the checkpoint by default: model.safetensors -> model.calibration.json / .png
    stem = str(out) if out else str(Path(ckpt_path).with_suffix("")) + ".calibration"
    json_path, png_path = Path(stem + ".json"), Path(stem + ".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    stored = task.card.to_dict() if task.card is not None else None
    report = {"checkpoint": str(ckpt_path), "prior": repr(task.prior), "seed": seed, "stored_card": stored}
    matplotlib.use("Agg")
    if isinstance(task, PosteriorTask):
        theta, x = held_out_pairs(task, None, num_posteriors, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tarp_result, sbc_result = calibration_report(task.network, theta, x, num_samples=num_samples, seed=seed)
        from priorfit.card import calibration_verdict

        summary = report_metrics(tarp_result, sbc_result, prefix="")
        dims = len(sbc_result.ks_pvalues)
        report.update(
            num_posteriors=num_posteriors,
            num_samples=num_samples,
            summary=summary,
            verdict=calibration_verdict(
                summary["tarp_ks_pvalue"], summary["tarp_atc"], summary["sbc_min_ks_pvalue"], dims
            ),
            tarp=tarp_result.to_dict(),
            sbc=sbc_result.to_dict(),
        )
        fig = report_figure(tarp_result, sbc_result, Path(ckpt_path).name)
    else:  # PFNs and the Distribution Transformer: a fresh card on held-out prior draws
        import matplotlib.pyplot as plt

        from priorfit.card import make_card

        points = (stored or {}).get("evaluation", {}).get("num_points")
        card = make_card(task, num_datasets=num_posteriors, num_points=points, num_samples=num_samples, seed=seed)
        report.update(summary=card.metrics, verdict=card.verdict(), card=card.to_dict())
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        card.plot(ax)
        fig.tight_layout()
    _write_json(report, json_path)
    _save_figure(fig, png_path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    report["files"] = [str(json_path), str(png_path)]
    return report


@hydra.main(version_base="1.3", config_path="pkg://priorfit.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Entry point of ``priorfit-eval ckpt_path=PATH [num_posteriors=200 num_samples=1000 seed=0 out=STEM]``."""
    try:
        if not cfg.get("ckpt_path"):
            raise CheckpointError(
                "priorfit-eval needs ckpt_path=PATH (a .ckpt or .safetensors file, or a registered name)"
            )
        report = evaluate_checkpoint(
            str(cfg.ckpt_path),
            num_posteriors=int(cfg.num_posteriors),
            num_samples=int(cfg.num_samples),
            seed=int(cfg.seed),
            out=cfg.get("out"),
            trusted_targets=list(cfg.get("trusted_targets") or []),
        )
    except PriorfitError as error:  # a user mistake: the message, not a stack trace
        print(f"priorfit-eval: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if report["stored_card"] is not None:
        from priorfit.card import CalibrationCard

        print(f"calibration card stored in the file: {CalibrationCard.from_dict(report['stored_card']).summary()}")
    print(json.dumps(report["summary"], indent=2))
    print(f"verdict on fresh held-out draws of the prior: {report['verdict']}")
    print("wrote " + " and ".join(report["files"]))


if __name__ == "__main__":
    main()
