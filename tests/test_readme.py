"""The README's 30-second example must run as written."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


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
    from priorfit import AmortizedPosterior
    from priorfit.priors.simulators import TwoMoons

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    validation = next(block for block in blocks if "priorfit.diagnostics" in block)
    problem = TwoMoons()  # the SBI example's objects, trained briefly
    post = AmortizedPosterior("gmm", max_epochs=3, logger=None, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=500)
    namespace: dict = {"problem": problem, "post": post, "AmortizedPosterior": AmortizedPosterior}
    exec(compile(validation, "README.md", "exec"), namespace)  # noqa: S102
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
    assert len(block.strip().splitlines()) == 3  # the card and the check in three lines
    problem = TwoMoons()  # the SBI example's objects, trained briefly
    post = AmortizedPosterior("gmm", max_epochs=2, logger=None, progress_bar=False)
    post.fit(problem.prior, problem.simulate, num_simulations=500)
    x_obs = problem.simulate(problem.prior.sample((1,)))
    namespace: dict = {"post": post, "x_obs": x_obs}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert post.card.kind == "posterior"
