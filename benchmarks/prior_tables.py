"""How heavy-tailed the bundled tabular priors' feature columns are: the figure behind the estimators' warning.

``PFNClassifier`` / ``PFNRegressor.fit`` warn for a column with more than 1 % of its values beyond 5 standard
deviations of its mean (``priorfit/preprocessing.py``). This samples 64 tables of 256 rows from each bundled tabular
checkpoint's prior (seed 0), z-scores every real column (padding columns left out) within its table, and reports the
fraction of values beyond 5 sd and the 99.9 % quantile of |z|.

    python benchmarks/prior_tables.py   # writes benchmarks/results/prior_tables.json
"""

from __future__ import annotations

from pathlib import Path

import torch
from _results import write_json  # benchmarks/ is on sys.path when a script runs

from priorfit.checkpoint import load_task

RESULTS = Path(__file__).resolve().parent / "results"


def column_z(name: str, tables: int = 64, rows: int = 256) -> torch.Tensor:
    """|z| of every value of every real column of ``tables`` prior tables."""
    prior = load_task(name).prior
    batch = prior.sample(tables, rows, generator=torch.Generator().manual_seed(0))
    x = batch.x.double()
    z = (x - x.mean(1, keepdim=True)).abs() / x.std(1, keepdim=True).clamp_min(1e-12)
    widths = batch.meta.get("num_features")
    width = x.shape[-1]
    real = torch.arange(width) < (widths.view(-1, 1) if widths is not None else torch.tensor([[width]]))
    constant = x.std(1) == 0  # a column constant over its table has no spread to measure against
    return z.permute(0, 2, 1)[real & ~constant].reshape(-1)


def main() -> None:
    torch.set_num_threads(2)
    report = {}
    for name in ("tabular-clf-small", "tabular-reg-small"):
        z = column_z(name)
        report[name] = {
            "values": int(z.numel()),
            "fraction_beyond_5_sd": float((z > 5).double().mean()),
            "quantile_999_abs_z": float(torch.quantile(z[torch.randperm(len(z))[:1_000_000]], 0.999)),
        }
        print(name, report[name])
    write_json({"tables": 64, "rows": 256, "seed": 0, "priors": report}, RESULTS / "prior_tables.json")


if __name__ == "__main__":
    main()
