"""Folding a training stage into a shipped default's files (ditcache.models.stages), on made-up files."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ditcache.models.stages import fold_stage

ARCH = {"width": 8}


def _training(seed, steps, source=None, fresh=()):
    tr = {"lr": 0.001, "schedule": "linear", "seed": seed, "steps": steps}
    if source:
        tr["init_from"] = {"source": source, "copied": 2, "fresh": list(fresh)}
    return tr


@pytest.fixture
def shipped(tmp_path):
    d = tmp_path / "weights"
    d.mkdir()
    meta = {"name": "toy", "architecture": ARCH, "training": _training(3, 100), "trained_steps": 100,
            "train_seconds": 60.0, "final_loss": 0.5,
            "stages": [{"command": "stage one", "trained_steps": 100, "train_seconds": 60.0, "final_loss": 0.5,
                        "seed": 3, "lr": 0.001, "schedule": "linear"}]}
    (d / "toy.json").write_text(json.dumps(meta))
    (d / "toy_loss.csv").write_text("step,loss,seconds\n50,0.7,30.0\n100,0.5,60.0\n")
    save_file({"w": torch.zeros(2, dtype=torch.float16)}, str(d / "toy.safetensors"), metadata={"name": "toy"})
    return d


def _run(tmp_path, source="toy.safetensors", fresh=(), name="toy"):
    run = tmp_path / "run.safetensors"
    save_file({"w": torch.tensor([1.0 / 3.0, 2.0]), "n": torch.tensor([7])}, str(run),
              metadata={"name": name, "steps": "40"})
    meta = {"name": name, "architecture": ARCH, "training": _training(4, 40, source, fresh), "trained_steps": 40,
            "train_seconds": 20.0, "final_loss": 0.4}
    run.with_suffix(".json").write_text(json.dumps(meta))
    (tmp_path / "run_loss.csv").write_text("step,loss,seconds\n20,0.45,10.0\n40,0.4,20.0\n")
    return run


def test_a_stage_appends_its_record_curve_and_float16_weights(shipped, tmp_path):
    new = fold_stage("toy", _run(tmp_path), "stage two", shipped)
    assert new["stages"][-1] == {"command": "stage two", "trained_steps": 40, "train_seconds": 20.0,
                                 "final_loss": 0.4, "seed": 4, "lr": 0.001, "schedule": "linear"}
    assert new["stages"][0]["command"] == "stage one" and new["trained_steps"] == 40
    assert new["training"]["init_from"]["source"].startswith("toy after stage 1")
    assert json.loads((shipped / "toy.json").read_text()) == new
    # the curve continues from step 100 and 60 s
    assert (shipped / "toy_loss.csv").read_text() == (
        "step,loss,seconds\n50,0.7,30.0\n100,0.5,60.0\n120,0.45,70.0\n140,0.4,80.0\n")
    w = load_file(str(shipped / "toy.safetensors"))
    assert w["w"].dtype == torch.float16 and w["w"].tolist() == [torch.tensor(1.0 / 3.0).half().item(), 2.0]
    assert w["n"].tolist() == [7]  # integer tensors unchanged
    with safe_open(str(shipped / "toy.safetensors"), "pt") as f:
        assert f.metadata() == {"name": "toy", "steps": "40"}
    assert not list(shipped.glob("*.tmp"))


@pytest.mark.parametrize("kwargs, needle", [
    ({"source": "other.safetensors"}, "not continued from the shipped toy"),
    ({"source": None}, "not continued from the shipped toy"),
    ({"fresh": ["proj"]}, "not continued from the shipped toy"),
    ({"name": "other"}, "not of the shipped 'toy'"),
])
def test_a_run_from_elsewhere_is_refused_and_nothing_changes(shipped, tmp_path, kwargs, needle):
    before = {p.name: p.read_bytes() for p in shipped.iterdir()}
    with pytest.raises(ValueError, match=needle):
        fold_stage("toy", _run(tmp_path, **kwargs), "stage two", shipped)
    assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before


def test_card_text_only_lists_the_stages_of_a_staged_default(tmp_path, monkeypatch):
    """`python -m ditcache.models.card --text-only` rewrites a card from the saved JSONs without sampling; for a
    default trained in stages it lists each stage and the totals (here uvit's stages, summed here)."""
    import shutil

    from ditcache.models import card

    shipped = card.WEIGHTS_DIR
    for f in ("uvit.json", "uvit_eval.json"):
        shutil.copy(shipped / f, tmp_path / f)
    stages = json.loads((shipped / "uvit.json").read_text())["stages"]
    monkeypatch.setattr(card, "WEIGHTS_DIR", tmp_path)
    card.main(["--models", "uvit", "--text-only", "--threads", "1"])
    text = (tmp_path / "MODEL_CARD_uvit.md").read_text()
    steps = 0
    for i, st in enumerate(stages):
        steps += st["trained_steps"]
        assert f"{i + 1}. `{st['command']}`" in text
    assert f"Trained in {len(stages)} stages, {steps} steps" in text
    assert "--init-from uvit after" not in text  # no command built from the stage's description
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL_CARD_uvit.md", "uvit.json", "uvit_eval.json"]


def test_card_text_only_busy_marks_the_saved_timing(tmp_path, monkeypatch):
    """`--text-only --busy` records in the eval JSON that its timing ran beside other jobs, and the card then says
    so beside the seconds; without the mark the seconds stand alone."""
    import shutil

    from ditcache.models import card

    for f in ("uvit.json", "uvit_eval.json"):
        shutil.copy(card.WEIGHTS_DIR / f, tmp_path / f)
    ev = json.loads((tmp_path / "uvit_eval.json").read_text())
    ev.pop("timed_busy", None)
    (tmp_path / "uvit_eval.json").write_text(json.dumps(ev))
    monkeypatch.setattr(card, "WEIGHTS_DIR", tmp_path)
    row = f"median of 3 | {ev['generation_seconds_16x50_cfg']:.2f} s"
    card.main(["--models", "uvit", "--text-only", "--threads", "1"])
    assert f"{row} |" in (tmp_path / "MODEL_CARD_uvit.md").read_text()
    card.main(["--models", "uvit", "--text-only", "--busy", "--threads", "1"])
    assert f"{row} (timed beside other jobs: not a speed figure) |" in (tmp_path / "MODEL_CARD_uvit.md").read_text()
    assert json.loads((tmp_path / "uvit_eval.json").read_text())["timed_busy"] is True


def test_video_cards_name_their_own_model_and_objective():
    """The two video defaults share the clips but not the model: Latte's card names Latte, its alternating
    blocks and DDPM/DDIM, the video default's names Wan and rectified flow; both count 8 frames x 9 x 9 tokens."""
    from ditcache.models.card import _video_intro
    from ditcache.models.defaults import LatteSpec, VideoSpec

    latte, wan = _video_intro("latte", LatteSpec()), _video_intro("video", VideoSpec())
    for text in (latte, wan):
        assert "8 x 81 = 648 tokens" in text and "36x36 pixels" in text
    assert "LatteTransformer3DModel" in latte and "3 spatial blocks" in latte and "3 temporal blocks" in latte
    assert "DDIM" in latte and "Wan" not in latte and "Rectified flow" not in latte
    assert "WanTransformer3DModel" in wan and "Rectified flow" in wan and "Latte" not in wan


def test_video_sweep_table_names_the_command_of_its_own_model():
    """The shipped video default has a CFG sweep (video_sweep.json); its card's table gives the command that
    reruns it, for that model by name."""
    from ditcache.models.card import _video_sweep_table

    table = _video_sweep_table("video")
    assert "`python -m ditcache.models.card --models video --sweep`" in table and "{name}" not in table


def test_a_sweep_off_the_defaults_names_its_scales_and_clips():
    """latte's shipped sweep ran 5 clips per class at six scales, not the video defaults (3 per class, 1.5-5):
    its table's command must say so, or rerunning it would give another sweep."""
    from ditcache.models.card import _video_sweep_table

    table = _video_sweep_table("latte")
    assert ("`python -m ditcache.models.card --models latte --sweep --sweep-per-class 5 --scales 1.5 2 3 5 7.5 10`"
            in table)
    assert "| 5.0 | 0.510 | 176.00 | 0.795 |" in table


def test_a_first_stage_writes_the_files_and_a_later_one_folds_by_its_init_file(tmp_path):
    """--first ships a from-scratch run; a stage started from that run's own file (not the shipped name) folds
    only when the file's float16 weights are the shipped ones."""
    from ditcache.models.stages import start_default

    weights = tmp_path / "weights"
    weights.mkdir()
    first = tmp_path / "first"
    first.mkdir()
    run1 = _run(first, source=None)
    new = start_default("toy", run1, "stage one", weights)
    assert new["stages"] == [{"command": "stage one", "trained_steps": 40, "train_seconds": 20.0,
                              "final_loss": 0.4, "seed": 4, "lr": 0.001, "schedule": "linear"}]
    assert (weights / "toy_loss.csv").read_text() == "step,loss,seconds\n20,0.45,10.0\n40,0.4,20.0\n"
    assert load_file(str(weights / "toy.safetensors"))["w"].dtype == torch.float16
    with pytest.raises(ValueError, match="already ships"):  # never over a shipped default
        start_default("toy", run1, "stage one", weights)

    second = tmp_path / "second"
    second.mkdir()
    run2 = _run(second, source="run.safetensors")  # started from run1's file, as its JSON names it
    with pytest.raises(ValueError, match="not continued"):  # by name alone it is not the shipped toy
        fold_stage("toy", run2, "stage two", weights)
    other = tmp_path / "run.safetensors"
    save_file({"w": torch.tensor([0.5, 2.0]), "n": torch.tensor([7])}, str(other))
    with pytest.raises(ValueError, match="not continued"):  # same name, other weights
        fold_stage("toy", run2, "stage two", weights, init_file=other)
    new = fold_stage("toy", run2, "stage two", weights, init_file=run1)
    assert [st["command"] for st in new["stages"]] == ["stage one", "stage two"]
    assert (weights / "toy_loss.csv").read_text().splitlines()[-1] == "80,0.4,40.0"


def test_a_continued_run_is_no_first_stage(tmp_path):
    from ditcache.models.stages import start_default

    weights = tmp_path / "weights"
    weights.mkdir()
    with pytest.raises(ValueError, match="trained from scratch"):
        start_default("toy", _run(tmp_path), "stage one", weights)
    assert not list(weights.iterdir())


def test_the_latte_card_counts_every_stage():
    """Latte ships from several stages: its card gives the steps and minutes of all of them (summed here from
    the JSON's stages), not the last stage's, and lists each stage's command."""
    from ditcache.models.defaults import WEIGHTS_DIR

    meta = json.loads((WEIGHTS_DIR / "latte.json").read_text())
    text = (WEIGHTS_DIR / "MODEL_CARD_latte.md").read_text()
    steps = sum(st["trained_steps"] for st in meta["stages"])
    minutes = sum(st["train_seconds"] for st in meta["stages"]) / 60
    assert f"{steps} steps in {minutes:.1f} min in all" in text
    assert f"Trained in {len(meta['stages'])} stages" in text
    assert all(f"`{st['command']}`" in text for st in meta["stages"])
    # the sampling steps stay the evaluation's (a card once printed the training total there)
    ev = json.loads((WEIGHTS_DIR / "latte_eval.json").read_text())
    assert f"One clip per class (uncached, {ev['steps']} steps," in text
    assert f"| generation of {ev['clips']} clips, {ev['steps']} steps |" in text
