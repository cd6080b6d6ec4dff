"""``priorfit-train --help`` and ``priorfit-eval --help``: a description, examples, their own keys, at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = (
    "import sys; sys.argv = ['priorfit-{name}', '--help']; from priorfit import cli; cli.{function}(); "
    "print('HEAVY' if {{'pytorch_lightning', 'hydra'}} & set(sys.modules) else 'LIGHT')"
)


@pytest.mark.parametrize(("name", "function"), [("train", "train"), ("eval", "evaluate")])
def test_help_describes_the_command_without_importing_lightning_or_hydra(name, function):
    code = PROBE.format(name=name, function=function)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"usage: priorfit-{name}") and "examples:" in out
    assert out.rstrip().endswith("LIGHT")
    if name == "train":
        assert "experiment: " in out and "gp_tiny" in out and "threads" in out
    else:
        assert "ckpt_path" in out and "experiment" not in out and "trainer" not in out  # no training-only groups
