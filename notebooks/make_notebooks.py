"""Build and execute the notebooks (run from the repository root): python notebooks/make_notebooks.py"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

QUICKSTART = [
    (
        "markdown",
        """# priorfit quickstart: a PFN for Gaussian-process regression

We train a small PFN on a 1-D Gaussian-process prior (RBF kernel, lengthscale 0.2, outputscale 1,
noise variance 0.05) for about a minute of CPU, then compare its posterior predictive — one forward
pass, no GP fitting — with the exact GP posterior predictive, which is known in closed form for this prior.""",
    ),
    (
        "code",
        """import tempfile, time
import matplotlib.pyplot as plt
import torch
from hydra import compose, initialize_config_module
from priorfit.train import train

torch.set_num_threads(2)
run_dir = tempfile.mkdtemp(prefix="priorfit_quickstart_")
with initialize_config_module(config_module="priorfit.conf", version_base="1.3"):
    cfg = compose(config_name="train", overrides=[
        "experiment=gp_tiny", "logger=none", f"paths.output_dir={run_dir}",
        "trainer.max_steps=700", "trainer.val_check_interval=700", "trainer.enable_progress_bar=false",
    ])
start = time.perf_counter()
metrics, objects = train(cfg)
print(f"trained in {time.perf_counter() - start:.0f} s")
model = objects["task"].eval()""",
    ),
    (
        "markdown",
        """## Predictive bands against the exact GP

For three held-out datasets we give the PFN 4, 12 and 30 context points and ask for the predictive on a
dense grid. Shaded: the PFN's 5–95 % quantile band; dashed: the exact GP's.""",
    ),
    (
        "code",
        """prior = model.prior
data = prior.sample(3, 30, generator=torch.Generator().manual_seed(123))
grid = torch.linspace(0, 1, 200).view(1, -1, 1)
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), sharey=True)
for ax, b, n in zip(axes, range(3), (4, 12, 30)):
    xc, yc = data.x[b:b+1, :n], data.y[b:b+1, :n]
    pred = model.predictive(xc, yc, grid)
    lo, med, hi = (pred.icdf(q)[0] for q in (0.05, 0.5, 0.95))
    mean, var = prior.predictive_mean_var(xc, yc, grid)
    sd = var[0].sqrt()
    g = grid[0, :, 0]
    ax.fill_between(g, lo, hi, alpha=0.3, label="PFN 5-95 %")
    ax.plot(g, med, label="PFN median")
    ax.plot(g, mean[0], "k", lw=1, label="exact GP mean")
    ax.plot(g, mean[0] - 1.645 * sd, "k--", lw=0.8, label="exact GP 5-95 %")
    ax.plot(g, mean[0] + 1.645 * sd, "k--", lw=0.8)
    ax.scatter(xc[0, :, 0], yc[0, :, 0], c="C3", s=15, zorder=3, label="context")
    ax.set_title(f"n = {n} context points")
axes[0].legend(fontsize=7, loc="lower left")
fig.tight_layout()""",
    ),
    (
        "markdown",
        """## How far from exact?

Mean NLL gap per query point to the exact GP predictive on 500 held-out datasets, by context size.
This one-minute model is a demo; `benchmarks/gp_exact_gap.py` trains the larger `gp_rbf_1d` model
and measures it against the reference `pfns` implementation.""",
    ),
    (
        "code",
        """held = prior.sample(500, 60, generator=torch.Generator().manual_seed(7))
xq, yq = held.x[:, 50:], held.y[:, 50:]
with torch.no_grad():
    for n in (1, 5, 10, 25, 50):
        nll = model.head.nll(model(held.x[:, :n], held.y[:, :n], xq), yq[..., 0]).mean()
        exact = -prior.predictive_log_density(held.x[:, :n], held.y[:, :n], xq, yq).mean()
        print(f"n={n:2d}: PFN NLL {nll:.3f}, exact {exact:.3f}, gap {nll - exact:.3f} nats")""",
    ),
]


def build(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(maker(source))
    return nb


NOTEBOOKS = {"01_quickstart.ipynb": QUICKSTART}


def main(names: list[str]) -> None:
    for name in names or NOTEBOOKS:
        nb = build(NOTEBOOKS[name])
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main(sys.argv[1:])
