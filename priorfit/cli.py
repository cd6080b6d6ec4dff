"""The command lines' entry points: ``--help`` answered without importing Lightning or Hydra (``import priorfit``
still loads torch, for the thread policy), anything else handed to the Hydra application (``priorfit.train.main``,
``priorfit.evaluate.main``)."""

from __future__ import annotations

import sys
from importlib import resources

__all__ = ["train", "evaluate", "usage"]

TRAIN = """usage: priorfit-train [experiment=NAME] [GROUP=OPTION ...] [KEY=VALUE ...]

Train a network on a prior with Lightning. The run folder (runs/<experiment>/<time>-<id>/, or
$PRIORFIT_RUNS_DIR) gets checkpoints/last.ckpt, model.safetensors (load it with priorfit.load), its
calibration card inside, wandb's offline logs and train.log. Ends by printing where they are.

examples:
  priorfit-train                                          # the default experiment, gp_tiny (a few CPU minutes)
  priorfit-train experiment=gp_rbf_1d                     # the benchmark GP model
  priorfit-train experiment=sbi_two_moons trainer.max_steps=2000
  priorfit-train ckpt_path=runs/gp_tiny/<time>/checkpoints/last.ckpt   # resume a run
  priorfit-train experiment=lc_pfn init_from=lc-pfn-small   # fine-tune: weights only, fresh schedule
  priorfit-train threads=1 seed=3 logger=csv              # one torch thread, another seed, CSV logs
  priorfit-train --config-dir my_conf prior=sine experiment_name=sine   # your own prior (see the README)
  priorfit-train experiment=gp_tiny --cfg job             # print the composed configuration, no training

top-level keys: seed, threads (null: the cores other jobs leave free), ckpt_path, init_from,
  overwrite (reuse a run folder that holds a model), experiment_name

{groups}
Hydra's own options: priorfit-train --hydra-help
"""

EVALUATE = """usage: priorfit-eval ckpt_path=PATH [KEY=VALUE ...]

Check a trained model. For a posterior: TARP and SBC on held-out simulations of its prior, with a plain-language
verdict, written as JSON and PNG beside the checkpoint. For a PFN or Distribution Transformer: a fresh
calibration card. Prints the card stored in the file too.

examples:
  priorfit-eval ckpt_path=runs/sbi_two_moons/<time>/model.safetensors
  priorfit-eval ckpt_path=pfn-gp-1d                        # a bundled checkpoint, by name
  priorfit-eval ckpt_path=model.safetensors num_posteriors=500 out=reports/two_moons
  priorfit-eval ckpt_path=sine.safetensors 'trusted_targets=[my_priors.SineWaves]'   # your own prior class

keys:
  ckpt_path        a .ckpt from priorfit-train, a .safetensors export, or a registered name
  num_posteriors   held-out (θ, x) pairs drawn from the prior (default 200)
  num_samples      posterior samples per pair (default 1000)
  seed             seed of the held-out draws (default 0)
  out              output path without extension (default: beside the checkpoint, <name>.calibration)
  trusted_targets  your own prior classes the checkpoint names (a checkpoint is data, not code)
"""


def _groups() -> str:
    """The config groups and their options, read from the packaged configs (no Hydra)."""
    conf = resources.files("priorfit.conf")
    lines = ["config groups (GROUP=OPTION):"]
    for group in sorted(entry.name for entry in conf.iterdir() if entry.is_dir() and not entry.name.startswith("_")):
        files = conf.joinpath(group).iterdir()
        options = sorted(item.name.removesuffix(".yaml") for item in files if item.name.endswith(".yaml"))
        if options:
            lines.append(f"  {group}: {', '.join(options)}")
    return "\n".join(lines) + "\n"


def usage(command: str) -> str:
    """The ``--help`` text of ``priorfit-train`` or ``priorfit-eval``."""
    return TRAIN.replace("{groups}", _groups()) if command == "train" else EVALUATE


def _wants_help(arguments: list[str]) -> bool:
    return any(argument in ("--help", "-h") for argument in arguments)


def train() -> None:
    """``priorfit-train``."""
    if _wants_help(sys.argv[1:]):
        print(usage("train"))
        return
    from priorfit.train import main

    main()


def evaluate() -> None:
    """``priorfit-eval``."""
    if _wants_help(sys.argv[1:]):
        print(usage("evaluate"))
        return
    from priorfit.evaluate import main

    main()
