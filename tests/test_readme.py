"""The README's examples must run as written: cheap versions here, every block as written and within the time
the README states for it (``<!-- budget: N s -->`` above it) in a fresh process under the ``slow`` marker."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"<!-- budget: (\d+) s(, continues the block above)? -->\n```python\n(.*?)```", flags=re.S)


def readme_runs() -> list[tuple[str, float]]:
    """(code, budget in seconds) per fresh process: a block that continues the one above runs after it."""
    runs: list[tuple[str, float]] = []
    for budget, continues, code in BLOCK.findall(README.read_text()):
        if continues:
            previous, previous_budget = runs.pop()
            runs.append((previous + "\n" + code, previous_budget + float(budget)))
        else:
            runs.append((code, float(budget)))
    return runs


def test_every_python_block_of_the_readme_states_its_budget():
    blocks = re.findall(r"```python\n", README.read_text())
    assert len(BLOCK.findall(README.read_text())) == len(blocks) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(readme_runs())))
def test_readme_block_runs_as_written_within_its_budget(index, tmp_path):
    code, budget = readme_runs()[index]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(tmp_path)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=budget
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"README run {index}: {elapsed:.1f} s of {budget:.0f} s")


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["predictive"].batch_shape == (1, 10)


def test_readme_tabular_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    tabular = next(block for block in blocks if "PFNClassifier" in block)
    namespace: dict = {}
    exec(compile(tabular, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["proba"].shape == (169, 2)


def test_readme_validation_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    validation = next(block for block in blocks if "priorfit.diagnostics" in block)
    small = validation.replace(
        'AmortizedPosterior("flow").fit(problem.prior, problem.simulate, num_simulations=1_000)',
        'AmortizedPosterior("gmm", max_epochs=3, progress_bar=False).fit(problem.prior, problem.simulate, 500)',
    )
    assert small != validation, "the README's diagnostics example changed"
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["samples"].shape == (1000, 200, 2)


def test_readme_learning_curve_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(block for block in blocks if "LearningCurveExtrapolator" in block)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["bands"].shape == (3, 3) and isinstance(namespace["stop"], bool)


def test_readme_distribution_transformer_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(block for block in blocks if "dt.update" in block)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["posterior"].means.shape == (2, 2) and len(namespace["steps"]) == 3


def test_readme_sbi_example_runs_with_a_small_budget(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(block for block in blocks if "post.posterior(x_obs)" in block)
    small = block.replace("num_simulations=10_000", "num_simulations=500").replace(
        'AmortizedPosterior("flow", num_iid=1)',
        'AmortizedPosterior("flow", num_iid=1, max_epochs=2, progress_bar=False)',
    )
    assert small.count("max_epochs=2") == 1 and "num_simulations=500" in small, "the README's SBI example changed"
    monkeypatch.chdir(tmp_path)  # the example saves a file in the working directory
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["q"].sample((7,)).shape == (7, 2)
    assert (tmp_path / "two_moons.safetensors").is_file()


def test_readme_card_and_check_example_runs():
    from priorfit import AmortizedPosterior
    from priorfit.priors.simulators import TwoMoons

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    block = next(block for block in blocks if "post.card" in block)
    assert len(block.strip().splitlines()) == 4  # the card and the check in four lines
    problem = TwoMoons()  # the SBI example's objects, trained briefly
    post = AmortizedPosterior("gmm", max_epochs=2, logger=None, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=500)
    x_obs = problem.simulate(problem.prior.sample((1,)))
    namespace: dict = {"post": post, "x_obs": x_obs}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert post.card.kind == "posterior"
