"""README's "Your own model" example, run exactly as written there."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT


def readme_example() -> tuple[dict[str, str], list[str]]:
    """The files and the command lines of README's "Your own model" section."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Your own model") :]
    section = section[: section.index("\n## ", 1)]
    files = dict(re.findall(r"<!-- file: (\S+) -->\n```python\n(.*?)```", section, re.S))
    run = re.search(r"<!-- run -->\n```bash\n(.*?)```", section, re.S).group(1)
    return files, [line for line in run.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.mark.slow
def test_the_your_own_model_example_runs_as_written(tmp_path):
    files, commands = readme_example()
    assert set(files) == {"my_nets.py", "my_config.py"} and len(commands) == 4
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    outputs = []
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "python", line
        proc = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        outputs.append(proc.stdout)
    with open(tmp_path / "runs" / "resmlp" / "config.json") as f:
        model = json.load(f)["model"]
    assert model["name"] == "my_nets:ResMLP" and model["depth"] == 3
    evaluated = json.loads(outputs[1].strip().splitlines()[-1])
    assert evaluated["accuracy"] > 0.9
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and all(0 <= int(r["labels"]) < 10 for r in rows)
