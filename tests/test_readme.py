"""The README runs as written: its opening commands, every Python block, every ditcache command line."""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", README, re.S)


def test_readme_opens_with_install_run_and_test_commands():
    head = README.split("## ")[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", head, re.S)
    assert len(blocks) == 2
    assert "pip install" in blocks[0] and "ditcache generate" in blocks[0]
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command():
    assert _blocks("bash")[1].strip() in (ROOT / ".ci" / "run").read_text()


def test_every_python_block_runs(monkeypatch, tmp_path):
    """All Python blocks, in order, in one namespace (later blocks use earlier names). Where a block loads
    a pipeline from the hub, the tiny offline pipeline of that family is swapped in (float32, and a small
    default image size so it runs in a second)."""
    import diffusers

    from ditcache.pipelines import tiny_pipeline

    families = {"FluxPipeline": "flux", "DiTPipeline": "dit", "PixArtSigmaPipeline": "pixart",
                "StableDiffusion3Pipeline": "sd3", "WanPipeline": "wan"}
    for cls_name, family in families.items():
        def load(*args, _family=family, **kwargs):
            pipe = tiny_pipeline(_family)
            pipe.default_sample_size = 16
            return pipe
        monkeypatch.setattr(getattr(diffusers, cls_name), "from_pretrained", load)
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert len(blocks) >= 5
    namespace: dict = {}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"README python block {i + 1}", "exec"), namespace)
        except Exception as e:  # name the block that failed
            raise AssertionError(f"README python block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e


def test_every_ditcache_command_line_parses():
    """Each `ditcache ...` line of the bash blocks names a real subcommand with valid flags."""
    from ditcache.cli import build_parser

    parser = build_parser()
    lines = [line for block in _blocks("bash") for line in block.splitlines()]
    checked = 0
    for line in lines:
        for command in line.split("&&"):
            words = shlex.split(command, comments=True)
            for i, w in enumerate(words):
                if w.endswith("ditcache") and i + 1 < len(words) and not words[i + 1].startswith("-"):
                    try:
                        parser.parse_args(words[i + 1:])
                    except SystemExit:
                        pytest.fail(f"README command does not parse: {command.strip()}")
                    checked += 1
                    break
    assert checked >= 6
