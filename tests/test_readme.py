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
