"""The README opens with the two commands a newcomer types, and CI runs exactly the second one."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_readme_opens_with_install_run_and_test_commands():
    head = (ROOT / "README.md").read_text().split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", head, re.S)
    assert len(blocks) == 2
    assert "pip install" in blocks[0] and "ditcache generate" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    assert _blocks()[1].strip() in (ROOT / ".ci" / "run").read_text()
