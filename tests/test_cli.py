"""Every bad input gets a clear one-line error before any work starts; nothing a user owns is overwritten."""

from __future__ import annotations

import hashlib
import json
from unittest import mock

import pytest
import torch

import ditcache
from ditcache import zoo
from ditcache.cli import main
from ditcache.methods.artifacts import SHIPPED
from ditcache.models import DefaultModel


def _fails(capsys, argv: list[str], *needles: str) -> str:
    """The command exits with 2 and prints one 'ditcache: error:' line naming the problem, before any work: a
    generation started before the refusal fails the test (rather than a wall-clock bound, which a busy machine
    breaks)."""
    capsys.readouterr()  # drop what earlier commands printed
    with mock.patch.object(DefaultModel, "generate", side_effect=AssertionError("sampled before refusing")):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ditcache: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_generate_refuses_bad_counts_and_outputs(capsys, tmp_path):
    _fails(capsys, ["generate", "--num", "0"], "--num", ">= 1")
    _fails(capsys, ["generate", "--steps", "0"], "--steps")
    folder = tmp_path / "somedir"
    folder.mkdir()
    _fails(capsys, ["generate", "--out", f"{folder}/"], "directory")
    _fails(capsys, ["generate", "--out", str(folder)], "directory")
    _fails(capsys, ["generate", "--out", str(tmp_path / "grid.txt")], ".png")
    _fails(capsys, ["generate", "--method", "toca:fresh_ratio=1.5"], "fresh_ratio", "[0, 1]")
    _fails(capsys, ["generate", "--method", "taylorseer:order=7"], "order", "0..4")
    _fails(capsys, ["generate", "--method", "fora:speed=3"], "bad setting")


def test_generate_creates_a_missing_output_folder(capsys, tmp_path):
    out = tmp_path / "new" / "sub" / "grid.png"
    assert main(["generate", "--num", "2", "--steps", "3", "--out", str(out), "--threads", "1"]) == 0
    assert out.stat().st_size > 0
    assert "PSNR" in capsys.readouterr().out


def test_every_shipped_default_is_a_command_line_choice(capsys, tmp_path):
    """The --model choices are the shipped defaults (the CLI lists them without importing torch); the video
    default writes an animated GIF: 8 frames of two rows (uncached above, cached below) of 2 clips."""
    from PIL import Image

    from ditcache.cli import DEFAULT_MODELS
    from ditcache.models import MODELS

    assert sorted(DEFAULT_MODELS) == sorted(MODELS)
    out = tmp_path / "clip.gif"
    assert main(["generate", "--model", "video", "--num", "2", "--steps", "3", "--method", "fora:interval=2",
                 "--out", str(out), "--threads", "1"]) == 0
    assert "PSNR" in capsys.readouterr().out
    with Image.open(out) as gif:
        assert gif.n_frames == 8


def test_method_none_reports_no_cache(capsys, tmp_path):
    assert main(["generate", "--num", "2", "--steps", "3", "--method", "none", "--out", str(tmp_path / "g.png"),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "no cache" in out and "PSNR" not in out and "fewer" not in out


def test_train_refuses_bad_settings_before_training(capsys):
    _fails(capsys, ["train", "l2c", "--model", "dit", "--iters", "0"], "iters")
    _fails(capsys, ["train", "tokencache", "--model", "dit", "--ratio", "1.5"], "ratio")
    _fails(capsys, ["train", "l2c", "--model", "dit", "--steps", "0"], "steps")
    _fails(capsys, ["train-default", "--model", "dit", "--steps", "0"], "--steps")
    _fails(capsys, ["train-default", "--model", "dit", "--lr", "0"], "--lr")
    _fails(capsys, ["train-default", "--model", "dit", "--schedule", "cosine"], "--schedule")


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_writes_where_told_never_into_the_package(capsys, tmp_path, monkeypatch):
    shipped = SHIPPED / "l2c_dit.safetensors"
    before = _digest(shipped)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "l2c", "--model", "dit", "--steps", "4", "--iters", "2", "--threads", "1"]) == 0
    default = tmp_path / "cache" / "ditcache" / "artifacts" / "l2c_dit.safetensors"
    assert default.is_file() and _digest(shipped) == before
    # an existing file is not replaced without --overwrite
    _fails(capsys, ["train", "l2c", "--model", "dit", "--steps", "4", "--iters", "2"], "exists", "--overwrite")
    mine = tmp_path / "mine.safetensors"
    assert main(["train", "l2c", "--model", "dit", "--steps", "4", "--iters", "2", "--out", str(mine)]) == 0
    assert mine.is_file() and _digest(shipped) == before
    assert f"l2c:artifact={mine}" in capsys.readouterr().out
    record = json.loads(mine.with_suffix(".json").read_text())  # what it was trained with, how long, its losses
    assert record["config"]["iters"] == 2 and record["config"]["steps"] == 4
    assert len(record["losses"]) == 2 and record["seconds"] > 0
    # the artifact it wrote is usable by name of file
    assert main(["generate", "--num", "1", "--steps", "4", "--method", f"l2c:artifact={mine}", "--out", ""]) == 0


def test_bench_refuses_bad_inputs(capsys, tmp_path):
    _fails(capsys, ["bench", "--seeds", "0"], "--seeds")
    _fails(capsys, ["bench", "--replay", str(tmp_path / "missing.json")], "no such trace")
    _fails(capsys, ["bench", "--methods", "fora,nonsense"], "unknown method", "nonsense")
    _fails(capsys, ["bench", "--budget", "speed>=2"], "bad budget")


def test_bench_accepts_a_setting_as_text(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--config", "dit-tiny", "--random-weights", "--methods", "fora:interval=4,warmup=1",
                 "--seeds", "2", "--steps", "4", "--batch", "2", "--repeats", "1", "--peers", "none",
                 "--out", str(out), "--threads", "1"]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(r["method"], r["setting"]) for r in rows] == [("none", "uncached"), ("fora", "fora:interval=4,warmup=1")]
    assert rows[0]["psnr"] is None  # uncached against itself: no PSNR, shown as "-"


def test_python_api_refuses_bad_methods_and_labels():
    model = zoo.build("dit-tiny")
    with pytest.raises(TypeError, match=r"pass an instance, e.g. FORA\(\)"):
        ditcache.apply(model, ditcache.FORA)
    with pytest.raises(TypeError, match="NoCache"):
        ditcache.apply(model, None)
    assert "forward" not in model.__dict__
    default = ditcache.load_default("dit")
    with pytest.raises(ValueError, match="at least one label"):
        default.generate(labels=[])


def test_toca_on_a_block_without_attention_projections_names_the_score_that_works():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.mlp = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

        def forward(self, x):
            return x + self.attn(x) + self.mlp(x)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block()])

        def forward(self, hidden_states, timestep):
            return self.blocks[0](hidden_states)

    ditcache.register_block(Block, ditcache.Branch("attn", "attn"), ditcache.Branch("mlp", "mlp", "tokens"))
    model = Model()
    with pytest.raises(ValueError, match="score='random'"):
        ditcache.apply(model, ditcache.ToCa(), steps=4)
    assert "forward" not in model.__dict__
    method = ditcache.ToCa(score="random", interval=2, warmup=1, fresh_ratio=0.5, step_curve=(1.0, 0.0))
    with ditcache.cached(model, method, steps=4) as run:
        for t in (900, 600, 300, 100):
            model(torch.randn(1, 6, 4), timestep=t)
    assert run.stats.counts()["partial"] > 0


def test_generate_loads_the_chosen_models_artifact(capsys):
    from ditcache.cli import _model_artifact
    from ditcache.methods import parse_method

    # the dataclass default is 'dit'; --model flux must load the flux files, and an explicit path stays
    for name in ("l2c", "tokencache", "hyca"):
        assert _model_artifact(parse_method(name), name, "flux").artifact == "flux"
        assert _model_artifact(parse_method(f"{name}:artifact=x.safetensors"), f"{name}:artifact=x.safetensors",
                               "flux").artifact == "x.safetensors"
    assert _model_artifact(parse_method("fora"), "fora", "flux") == ditcache.FORA()
    assert not (SHIPPED / "hyca_flux256.safetensors").exists()  # every default ships L2C and TokenCache now
    _fails(capsys, ["generate", "--model", "flux256", "--method", "hyca"], "no shipped hyca artifact",
           "--model flux256")


def test_context_parallel_bench_needs_torchrun_with_that_many_ranks(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    _fails(capsys, ["bench", "--context-parallel", "2", "--model", "flux"], "torchrun --nproc-per-node 2",
           "WORLD_SIZE is unset")
    monkeypatch.setenv("WORLD_SIZE", "4")
    _fails(capsys, ["bench", "--context-parallel", "2", "--model", "flux"], "needs 2 processes", "WORLD_SIZE is 4")
    _fails(capsys, ["bench", "--context-parallel", "1"], ">= 2 ranks")


def test_describe_names_the_nearest_preset_and_reads_back():
    """A setting one field off a preset is written from the preset; one nearer the defaults stays written from
    them; parse_method reads every text back to the same config."""
    from ditcache.methods import describe, parse_method

    cases = [(ditcache.ToCa.preset("opensora"), "toca:preset=opensora"),
             (ditcache.ToCa.preset("opensora", interval=4), "toca:preset=opensora,interval=4"),
             (ditcache.ToCa(fresh_ratio=0.1), "toca:fresh_ratio=0.1"),
             (ditcache.ClusCa.preset("hunyuanvideo", clusters=4), "clusca:preset=hunyuanvideo,clusters=4"),
             (ditcache.FORA(interval=2), "fora:interval=2"), (ditcache.TaylorSeer(), "taylorseer")]
    for method, text in cases:
        assert describe(method) == text
        assert parse_method(text) == method


def test_an_error_line_names_a_bare_key_and_keeps_a_registrys_sentence():
    """A KeyError from a registry carries a sentence, printed without the quotes str() adds; one from a failed
    lookup inside carries only the key, so the line names it (it read 'ditcache: error: 6' before)."""
    from ditcache.cli import _message

    assert _message(KeyError(6)) == "KeyError: 6"
    assert _message(KeyError("uncached")) == "KeyError: 'uncached'"
    assert _message(KeyError("unknown method 'nope'; known methods: ['fora']")) == \
        "unknown method 'nope'; known methods: ['fora']"
    assert _message(ValueError("--num must be >= 1")) == "--num must be >= 1"
    assert _message(TypeError("Row() got an unexpected keyword")) == "TypeError: Row() got an unexpected keyword"
