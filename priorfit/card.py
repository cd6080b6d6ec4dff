"""The calibration card every exported checkpoint carries: how well calibrated the model is on held-out draws of
its prior, the domain it was trained on, and how long it trained.

``make_card(task)`` evaluates a trained task (held-out prior draws, or a posterior's validation simulations) and
returns a :class:`CalibrationCard`; ``export_checkpoint`` stores ``card.to_dict()`` as JSON under the safetensors
metadata key ``calibration_card``, and every loaded model shows it as ``model.card``. The card is data: it is read
back as plain JSON and checked, never executed.

What each kind of model reports:

- posteriors (amortized posteriors, the Distribution Transformer): TARP's ATC and KS p-value, SBC's per-dimension KS
  p-values, and the coverage of the 50 % and 90 % credible regions (TARP's ECP at those levels);
- regression PFNs (GP, tabular regression, learning curves): the NLL of held-out query labels, the KS p-value of the
  probability integral transform (one query per data set, so the values are independent) and the coverage of the
  central 50 % and 90 % predictive intervals (all queries);
- classification PFNs: the expected calibration error (15 equal-width confidence bins), accuracy and NLL.
"""

from __future__ import annotations

import json
import math
import textwrap
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from priorfit.errors import CheckpointError, InvalidHyperparameterError
from priorfit.networks.modes import evaluating
from priorfit.networks.sampling import posterior_samples

__all__ = ["CalibrationCard", "make_card", "card_from_metadata", "CARD_KEY"]

CARD_KEY = "calibration_card"  # the safetensors metadata key
KINDS = ("posterior", "regression", "classification")
LEVELS = [i / 20 for i in range(21)]  # the nominal levels of the stored calibration curve
ECE_BINS = 15


@dataclass
class CalibrationCard:
    """A model's calibration on held-out prior draws, its training domain and its training budget.

    Attributes:
        kind: "posterior", "regression" or "classification".
        metrics: the headline numbers (see the module docstring), e.g. ``{"tarp_atc": 0.01, "coverage_90": 0.89}``.
        curve: ``{"nominal": [...], "observed": [...]}``: coverage against credibility level (posteriors,
            regression) or accuracy against confidence (classification, the reliability diagram).
        per_dimension: per-parameter values (``sbc_ks_pvalues`` of posteriors).
        domain: the training domain the model checks queries against (``priorfit.domain``).
        training: how long it trained (steps, data sets or simulations, wall-clock seconds where recorded).
        evaluation: how the card was computed (data sets, seed, sizes, seconds), enough to recompute it.
    """

    kind: str
    metrics: dict[str, float]
    curve: dict[str, list[float]]
    per_dimension: dict[str, list[float]] = field(default_factory=dict)
    domain: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> CalibrationCard:
        """A card from its stored JSON; anything else than the documented plain fields is refused."""
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise CheckpointError(f"not a calibration card (a JSON object with kind in {KINDS}): {str(data):.80}")
        numbers = data.get("metrics")
        if not isinstance(numbers, dict) or not all(isinstance(v, (int, float)) for v in numbers.values()):
            raise CheckpointError("a calibration card's metrics must be a JSON object of numbers")
        fields = ("curve", "per_dimension", "domain", "training", "evaluation")
        if any(not isinstance(data.get(name, {}), dict) for name in fields):
            raise CheckpointError(f"a calibration card's {', '.join(fields)} must be JSON objects")
        unknown = set(data) - {"kind", "metrics", *fields}
        if unknown:
            raise CheckpointError(f"a calibration card has unknown fields {sorted(unknown)}")
        return cls(kind=data["kind"], metrics=dict(numbers), **{name: dict(data.get(name, {})) for name in fields})

    def summary(self) -> str:
        """One line: the headline numbers and what they were measured on."""
        m, n = self.metrics, self.evaluation.get("num_datasets", "?")
        if self.kind == "posterior":
            text = (
                f"TARP ATC {m['tarp_atc']:+.3f} (KS p {m['tarp_ks_pvalue']:.2g}), SBC min p "
                f"{m['sbc_min_ks_pvalue']:.2g}, 50/90% coverage {m['coverage_50']:.2f}/{m['coverage_90']:.2f}"
            )
        elif self.kind == "regression":
            text = (
                f"NLL {m['nll']:.3f}, PIT KS p {m['pit_ks_pvalue']:.2g}, 50/90% interval coverage "
                f"{m['coverage_50']:.2f}/{m['coverage_90']:.2f}"
            )
        else:
            text = f"ECE {m['ece']:.3f}, accuracy {m['accuracy']:.3f}, NLL {m['nll']:.3f}"
        return f"{text} on {n} held-out {self.evaluation.get('source', 'prior draws')}"

    def verdict(self) -> str:
        """The card in plain words: calibrated or not, and which way, at the 5 % level."""
        m = self.metrics
        if self.kind == "posterior":
            dims = max(1, len(self.per_dimension.get("sbc_ks_pvalues", [])))
            return calibration_verdict(m["tarp_ks_pvalue"], m["tarp_atc"], m["sbc_min_ks_pvalue"], dims)
        if self.kind == "regression":
            if m["pit_ks_pvalue"] >= 0.05:
                return "calibrated: intervals cover as often as they claim (no sign of miscalibration at 5 %)"
            way = "over-confident (intervals too narrow)" if m["coverage_90"] < 0.9 else "under-confident (too wide)"
            return f"miscalibrated: {way}; the 90% intervals cover {m['coverage_90']:.0%} of held-out labels"
        if m["ece"] <= 0.02:
            return "calibrated: predicted probabilities match accuracy within 0.02 on average"
        return f"miscalibrated: predicted probabilities differ from accuracy by {m['ece']:.3f} on average (ECE)"

    def plot(self, ax=None):
        """The calibration curve against the diagonal (coverage, or the reliability diagram). Returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots(figsize=(4, 4))[1]
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfectly calibrated")
        ax.plot(self.curve["nominal"], self.curve["observed"], marker="o", markersize=3, label="this model")
        if self.kind == "classification":
            labels = ("confidence (predicted probability of the chosen class)", "accuracy")
        elif self.kind == "regression":
            labels = ("nominal level of the central predictive interval", "fraction of labels inside")
        else:
            labels = ("credibility level", "expected coverage (TARP)")
        ax.set(xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1))
        ax.set_title(textwrap.fill(self.summary().split(" on ")[0], 46), fontsize="small")
        ax.legend(loc="upper left", fontsize="small")
        return ax

    def __str__(self) -> str:
        return f"CalibrationCard({self.kind}: {self.summary()})"


def calibration_verdict(tarp_ks_pvalue: float, tarp_atc: float, sbc_min_ks_pvalue: float, dims: int) -> str:
    """TARP and SBC results in plain words, at the 5 % level (SBC's per-dimension tests Bonferroni-corrected)."""
    problems = []
    if tarp_ks_pvalue < 0.05:
        way = "under-confident (too wide)" if tarp_atc > 0 else "over-confident (too narrow)"
        problems.append(f"its credible regions are {way}: TARP's coverage curve leaves the diagonal")
    if sbc_min_ks_pvalue < 0.05 / dims:
        problems.append("the ranks of the true value of at least one parameter are not uniform (SBC)")
    if not problems:
        return "calibrated: no sign of miscalibration at the 5 % level"
    return "miscalibrated: " + "; ".join(problems) + ". Train longer or on more simulations, then check again."


def card_from_metadata(metadata: dict | None) -> CalibrationCard | None:
    """The card stored in a safetensors header's metadata, or None when the file has none."""
    text = (metadata or {}).get(CARD_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's calibration card is not valid JSON ({error})") from None
    return CalibrationCard.from_dict(data)


@torch.no_grad()
def make_card(
    task,
    *,
    held_out: tuple[Tensor, Tensor] | None = None,
    training: dict | None = None,
    num_datasets: int | None = None,
    num_points: int | None = None,
    num_samples: int = 250,
    seed: int = 2024,
) -> CalibrationCard:
    """Evaluate a trained task and return its card.

    Args:
        task: a trained ``PosteriorTask``, ``PFNTask`` or ``DTTask``.
        held_out: a posterior's held-out simulations (θ (B, Dθ), x (B, n, Dx)), e.g. its validation split; None
            draws them from the task's prior (PFNs and the Distribution Transformer always do).
        training: how long it trained, stored as given (e.g. ``{"steps": 6000, "wall_seconds": 900}``).
        num_datasets: held-out data sets (default: 200 amortized posteriors, 800 Distribution Transformer and 256
            PFN data sets: a TARP curve of 200 data sets is still noisy).
        num_points: points per PFN data set (context + queries); default: the largest trained context + 20.
        num_samples: posterior samples per data set (TARP, SBC).
        seed: seeds the held-out draws; a card is recomputed exactly from its ``evaluation`` settings.
    """
    from priorfit.tasks.dt import DTTask
    from priorfit.tasks.pfn import PFNTask
    from priorfit.tasks.posterior import PosteriorTask

    started = time.perf_counter()
    settings: dict[str, Any] = {"seed": seed}
    with evaluating(task), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(task, PosteriorTask):
            from priorfit.evaluate import held_out_pairs

            if held_out is None:
                theta, x = held_out_pairs(task, None, num_datasets or 200, seed)
            else:
                theta, x = (values[: num_datasets or 200] for values in held_out)
            settings.update(num_datasets=len(theta), num_samples=num_samples)
            samples = posterior_samples(task.network, x.to(task.device), num_samples).cpu()
            kind, metrics, curve, per_dimension = _posterior_card(samples, theta.cpu(), seed)
            source = "prior draws" if held_out is None else "validation simulations"
        elif isinstance(task, DTTask):
            settings.update(num_datasets=num_datasets or 800, num_samples=num_samples)
            samples, theta = _dt_draws(task, settings, seed)
            kind, metrics, curve, per_dimension = _posterior_card(samples, theta, seed)
            source = "prior draws"
        elif isinstance(task, PFNTask):
            settings.update(num_datasets=num_datasets or 256)
            context = _context_range(task.hparams.get("domain"), "num_context")
            settings.update(num_points=num_points or context[1] + 20, num_context=list(context))
            kind, metrics, curve, per_dimension = _pfn_card(task, settings, seed)
            source = "prior draws"
        else:
            raise InvalidHyperparameterError(f"no calibration card for a {type(task).__name__}")
    settings.update(source=source, seconds=round(time.perf_counter() - started, 2))
    return CalibrationCard(
        kind=kind,
        metrics={name: _plain(value) for name, value in metrics.items()},
        curve={name: [_plain(v) for v in values] for name, values in curve.items()},
        per_dimension={name: [_plain(v) for v in values] for name, values in per_dimension.items()},
        domain=_full_domain(task),
        training=dict(training or {}),
        evaluation=settings,
    )


def _full_domain(task) -> dict:
    """Every range the model checks queries against (stored ones and those derived from its prior and head), plus
    a PFN's feature and class limits."""
    from priorfit.tasks.pfn import PFNTask

    domain = getattr(task, "domain", None) or getattr(task.network, "domain", None)
    ranges = domain.to_dict() if domain is not None else dict(task.hparams.get("domain") or {})
    if isinstance(task, PFNTask):
        ranges["num_features"] = [1, int(task.network.max_features)]
        if task.hparams.objective == "classification":
            ranges["num_classes"] = [2, int(task.hparams.num_classes)]
    return ranges


def _plain(value) -> float:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else value


def _context_range(domain: dict | None, name: str) -> tuple[int, int]:
    bounds = (domain or {}).get(name)
    if not bounds:
        raise InvalidHyperparameterError(
            f"the model records no {name} range (trained before priorfit recorded its domain): pass "
            f"domain={{'{name}': [min, max]}} to the task, as its data module trained it"
        )
    return int(bounds[0]), int(bounds[1])


def _spread(low: int, high: int, count: int) -> list[int]:
    """``count`` sizes spread evenly over [low, high] (as the validation sets are)."""
    return [round(low + (high - low) * i / max(count - 1, 1)) for i in range(count)]


def _dt_draws(task, settings: dict, seed: int) -> tuple[Tensor, Tensor]:
    """(num_samples, B, Dθ) DT posterior draws and the true θ (B, Dθ) of held-out data sets, observation counts
    spread over the trained range, drawn in groups of one count each."""
    low, high = _context_range(task.hparams.get("domain"), "num_observations")
    settings["num_observations"] = [low, high]
    generator = torch.Generator().manual_seed(seed)
    groups = 8
    per_group = math.ceil(settings["num_datasets"] / groups)
    samples, thetas = [], []
    for count in _spread(low, high, groups):
        batch = task.prior.sample(per_group, count, generator=generator)
        meta = batch.meta
        posterior = task.network(meta["prior_logits"], meta["prior_means"], meta["prior_scale_tril"], batch.x)
        samples.append(posterior.sample((settings["num_samples"],)))
        thetas.append(batch.theta)
    settings["num_datasets"] = per_group * groups
    return torch.cat(samples, dim=1), torch.cat(thetas)


def _posterior_card(samples: Tensor, theta: Tensor, seed: int):
    from priorfit.diagnostics import sbc, tarp

    tarp_result = tarp(samples.double(), theta.double(), seed=seed, num_bootstrap=0)
    sbc_result = sbc(samples, theta, seed=seed)
    coverage = tarp_result.ecp_at(torch.tensor(LEVELS, dtype=torch.float64))
    metrics = {
        "tarp_atc": tarp_result.atc,
        "tarp_ks_pvalue": tarp_result.ks_pvalue,
        "sbc_min_ks_pvalue": float(sbc_result.ks_pvalues.min()),
        "coverage_50": float(coverage[10]),
        "coverage_90": float(coverage[18]),
    }
    curve = {"nominal": LEVELS, "observed": coverage.tolist()}
    return "posterior", metrics, curve, {"sbc_ks_pvalues": sbc_result.ks_pvalues.tolist()}


def _pfn_card(task, settings: dict, seed: int):
    """Held-out prior data sets in batches of one context size each, sizes spread over the trained range."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = 16
    num_batches = math.ceil(settings["num_datasets"] / batch_size)
    settings["num_datasets"] = num_batches * batch_size
    low, high = settings["num_context"]
    outputs = []
    for num_context in _spread(low, min(high, settings["num_points"] - 1), num_batches):
        batch = task.prior.sample(batch_size, settings["num_points"], generator=generator)
        batch.meta["num_context"] = num_context
        x_context, y_context, x_query, y_query = task._split(batch)
        logits = task.network(x_context, y_context, x_query, num_features=batch.meta.get("num_features"))
        outputs.append((logits.float(), y_query))
    if task.hparams.objective == "classification":
        return _classification_card(task.head, outputs)
    return _regression_card(task.head, outputs)


def _regression_card(head, outputs: list[tuple[Tensor, Tensor]]):
    from scipy.stats import kstest

    pit = [head.cdf(logits, y).clamp(0, 1) for logits, y in outputs]
    nll = torch.cat([head.nll(logits, y).reshape(-1) for logits, y in outputs]).mean()
    all_pit = torch.cat([values.reshape(-1) for values in pit]).double()
    first_query = torch.cat([values[:, 0] for values in pit]).double()  # one per data set: independent values
    distance = (all_pit - 0.5).abs()
    observed = [float((distance <= level / 2).double().mean()) for level in LEVELS]
    metrics = {
        "nll": float(nll),
        "pit_ks_pvalue": float(kstest(first_query.numpy(), "uniform").pvalue),
        "coverage_50": observed[10],
        "coverage_90": observed[18],
    }
    return "regression", metrics, {"nominal": LEVELS, "observed": observed}, {}


def _classification_card(head, outputs: list[tuple[Tensor, Tensor]]):
    probs = torch.cat([torch.softmax(logits, -1).reshape(-1, logits.shape[-1]) for logits, _ in outputs]).double()
    labels = torch.cat([y.reshape(-1) for _, y in outputs]).long()
    nll = -probs.clamp_min(1e-12).log().gather(1, labels[:, None]).mean()
    confidence, chosen = probs.max(1)
    correct = (chosen == labels).double()
    bins = (confidence * ECE_BINS).long().clamp(max=ECE_BINS - 1)
    nominal, observed, ece = [], [], 0.0
    for index in range(ECE_BINS):
        members = bins == index
        if members.any():
            nominal.append(float(confidence[members].mean()))
            observed.append(float(correct[members].mean()))
            ece += float(members.double().mean()) * abs(nominal[-1] - observed[-1])
    metrics = {"ece": ece, "accuracy": float(correct.mean()), "nll": float(nll)}
    return "classification", metrics, {"nominal": nominal, "observed": observed}, {}
