"""Your own pipeline: `--pipeline` on generate, bench, tune and train, `bench.compare`, profiles and learned
artifacts, on tiny pipelines saved with save_pretrained and loaded by path (the code a hub id takes, offline)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import ditcache
from ditcache.cli import main
from ditcache.pipelines import tiny_pipeline

# family -> the options its tiny pipeline needs (PixArt and Sana bin sizes to their trained ones unless told not to)
SIZE = ["--height", "16", "--width", "16"]
FAMILIES = {
    "flux": SIZE,
    "sd3": SIZE,
    "pixart": SIZE + ["--call-arg", "use_resolution_binning=false"],
    "wan": SIZE + ["--num-frames", "5"],
    "sana": ["--height", "32", "--width", "32", "--call-arg", "use_resolution_binning=false"],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(name)``: a folder holding the tiny pipeline ``name``, written by save_pretrained (once)."""
    root = tmp_path_factory.mktemp("pipelines")
    folders: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in folders:
            tiny_pipeline(name).save_pretrained(root / name)
            folders[name] = str(root / name)
        return folders[name]

    return get


def _load(folder: str):
    from ditcache.userpipe import load_pipeline

    return load_pipeline(folder)


def _fails(capsys, argv: list[str], *needles: str, loaded: bool = False) -> str:
    """Exit 2 with one 'ditcache: error:' line naming the problem, before any work (nothing loaded, unless
    ``loaded``: then the loading progress bars come first on stderr, and the message is the last line)."""
    import diffusers

    capsys.readouterr()
    loads = []
    real = diffusers.DiffusionPipeline.from_pretrained
    with pytest.MonkeyPatch.context() as mp:  # count the pipeline loads the refusal came after
        mp.setattr(diffusers.DiffusionPipeline, "from_pretrained",
                   classmethod(lambda cls, *a, **k: loads.append(a) or real.__func__(cls, *a, **k)))
        assert main(argv) == 2
    assert len(loads) == (1 if loaded else 0), loads
    err = capsys.readouterr().err.strip()
    if loaded:
        err = err.splitlines()[-1]
    assert err.startswith("ditcache: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if any weights are loaded."""
    import ditcache.userpipe

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(ditcache.userpipe, "load_pipeline", refuse)


# --------------------------------------------------------------------------- generate


@pytest.mark.parametrize("family", list(FAMILIES))
def test_generate_side_by_side_on_each_family(family, saved, tmp_path, capsys):
    from PIL import Image

    video = family == "wan"
    out = tmp_path / ("clip.gif" if video else "grid.png")
    assert main(["generate", "--pipeline", saved(family), "--prompt", "a red dress", "--prompt", "a blue coat",
                 "--steps", "4", "--method", "fora:interval=2", "--out", str(out), "--threads", "1",
                 *FAMILIES[family]]) == 0
    text = capsys.readouterr().out
    assert "FLOPs (transformer)" in text and "fewer" in text and "PSNR" in text and "latent error" in text
    assert "no ratio" in text  # runs this short get no wall-clock ratio
    with Image.open(out) as picture:
        assert picture.size[1] > 2 * 96  # a row per prompt, each at least 96 pixels high
        assert getattr(picture, "n_frames", 1) == (5 if video else 1)


def test_wall_line_prints_a_ratio_only_when_meaningful():
    from ditcache.cli_pipeline import wall_line

    assert "x;" not in wall_line(0.2, 0.5) and "no ratio" in wall_line(0.2, 0.5)
    assert "2.00x" in wall_line(2.0, 4.0) and "after a warm-up" in wall_line(2.0, 4.0)


# --------------------------------------------------------------------------- bench


def test_bench_two_methods_one_peer_four_seeds(saved, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--pipeline", saved("flux"), "--prompt", "a red dress", *SIZE, "--steps", "10",
                 "--seeds", "4", "--methods", "fora:interval=2,taylorseer:interval=3", "--peers", "fbcache",
                 "--repeats", "1", "--bootstrap", "50", "--budget", "psnr>=30", "--out", str(out),
                 "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "CLIP score not measured" in text or "CLIP score" in (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert [r["method"] for r in rows] == ["none", "fora", "taylorseer", "fbcache", "fbcache", "fbcache"]
    for r in rows[1:]:
        assert r["error"] is None, r
        assert r["flop_speedup"] > 0 and r["wall_speedup"] > 0 and len(r["wall_speedup_range"]) == 2
        for m in ("psnr", "ssim", "latent_err"):
            lo, hi = r[f"{m}_ci"]
            assert lo <= r[m] <= hi
    assert rows[1]["flop_speedup"] > 1.5 and rows[2]["flop_speedup"] > 2.0
    assert "ditcache:fora" in report["budget"]["best"]
    for name in ("report.md", "pareto.png", "grid_ditcache_fora.png", "grid_peer_fbcache.png"):
        assert (out / name).stat().st_size > 0


def test_compare_from_python_returns_rows(saved):
    import ditcache.bench

    pipe = _load(saved("sd3"))
    rows = ditcache.bench.compare(pipe, ["a red dress"], methods=["fora:interval=2", ditcache.FORA(interval=1)],
                                  peers="none", seeds=[0, 1], steps=6, height=16, width=16, repeats=1,
                                  bootstrap=20, measures=(), progress=False, log=lambda line: None)
    assert [r.setting for r in rows] == ["uncached", "fora:interval=2", "fora:interval=1"]
    assert rows[2].psnr == 99.0 and rows[2].latent_err == 0.0  # computing everything: identical
    assert rows[1].psnr < 99.0 and rows[1].flop_speedup > 1.3


# --------------------------------------------------------------------------- tune and profiles


@pytest.fixture(scope="module")
def profile_path(saved, tmp_path_factory):
    """A profile tuned on the tiny SD3 pipeline at 10 steps, 16x16 (psnr>=60 passes FORA's interval 4, not 6)."""
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    assert main(["tune", "--pipeline", saved("sd3"), "--prompt", "a red dress", *SIZE, "--steps", "10",
                 "--seeds", "2", "--methods", "fora,taylorseer:order=1", "--budget", "psnr>=60", "--repeats", "1",
                 "--bootstrap", "20", "--out", str(path), "--threads", "1"]) == 0
    return path


def test_tune_searches_coarse_to_fine_and_writes_a_profile(profile_path):
    data = json.loads(profile_path.read_text())
    assert data["format"] == "ditcache-profile-1" and data["budget"] == "psnr>=60"
    at = data["measured_at"]
    assert at["transformers"]["transformer"].startswith("SD3Transformer2DModel:")
    assert at["steps"] == 10 and at["num_steps"] == 10 and at["height"] == 16 and at["dtype"] == "float32"
    searched = [s["method"] for s in data["search"] if s["method"].startswith("fora")]
    assert len(searched) < 5  # of intervals 2..6: not the whole sweep
    for name, entry in data["per_method"].items():
        assert entry["method"] is None or entry["psnr"] >= 60
    m = data["measured"]
    assert m["method"] == data["method"] and m["psnr"] >= 60 and len(m["psnr_ci"]) == 2
    assert m["flop_speedup"] > 1 and len(m["wall_speedup_range"]) == 2


def _images(pipe, method, steps=10, seeds=(0, 1)):
    with ditcache.cached(pipe, method):
        out = pipe(prompt=["a red dress"] * len(seeds), num_inference_steps=steps, height=16, width=16,
                   generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="pt")
    return out.images


def test_profile_round_trips_to_its_method_text(saved, profile_path, capsys, tmp_path):
    pipe = _load(saved("sd3"))
    text = json.loads(profile_path.read_text())["method"]
    assert torch.equal(_images(pipe, str(profile_path)), _images(pipe, text))
    out = tmp_path / "grid.png"
    assert main(["generate", "--pipeline", saved("sd3"), "--prompt", "a red dress", *SIZE, "--steps", "10",
                 "--method", str(profile_path), "--out", str(out), "--threads", "1"]) == 0
    assert text in capsys.readouterr().out and out.exists()


def test_profile_refused_on_another_model_step_count_or_size(saved, profile_path, capsys):
    from ditcache.profile import Profile

    flux = _load(saved("flux"))
    with pytest.raises(ValueError, match="measured on transformer SD3Transformer2DModel:.*this is FluxTransformer"):
        ditcache.cached(flux, str(profile_path)).__enter__()
    sd3 = _load(saved("sd3"))
    with pytest.raises(ValueError, match="measured at 10 steps, this generation has 6"):
        _images(sd3, str(profile_path), steps=6)
    with pytest.warns(UserWarning, match="measured at 10 steps.*applied anyway"):
        _images(sd3, Profile.load(profile_path, force=True), steps=6)
    _fails(capsys, ["generate", "--pipeline", saved("sd3"), "--prompt", "a red dress", *SIZE, "--steps", "6",
                    "--method", str(profile_path)], "measured at 10 steps, --steps is 6", "--force")
    _fails(capsys, ["generate", "--pipeline", saved("sd3"), "--prompt", "a red dress", "--height", "32", "--width",
                    "32", "--steps", "10", "--method", str(profile_path)], "height 16, --height is 32")
    _fails(capsys, ["generate", "--pipeline", saved("flux"), "--prompt", "a red dress", *SIZE, "--steps", "10",
                    "--method", str(profile_path), "--out", ""], "SD3Transformer2DModel", "FluxTransformer2DModel",
           loaded=True)


# --------------------------------------------------------------------------- train


def test_train_l2c_on_the_pipelines_own_calls(saved, tmp_path, capsys):
    from ditcache.artifact import Artifact, fingerprint

    out = tmp_path / "router.safetensors"
    assert main(["train", "l2c", "--pipeline", saved("pixart"), "--prompt", "a red dress", "--prompt", "a blue coat",
                 *FAMILIES["pixart"], "--steps", "6", "--iters", "6", "--out", str(out), "--threads", "1"]) == 0
    assert "fingerprint PixArtTransformer2DModel:" in capsys.readouterr().out
    pipe = _load(saved("pixart"))
    art = Artifact.load(out, "l2c")
    assert art.fingerprint == fingerprint(pipe.transformer) and len(art.timesteps) == 6
    assert json.loads(out.with_suffix(".json").read_text())["prompts"] == ["a red dress", "a blue coat"]
    with ditcache.cached(pipe, ditcache.L2C(artifact=str(out), threshold=0.99)) as run:
        pipe("a red dress", num_inference_steps=6, height=16, width=16, use_resolution_binning=False)
    assert run.stats.counts()["reuse"] > 0
    with pytest.raises(ValueError, match="trained for 6 steps"):
        with ditcache.cached(pipe, ditcache.L2C(artifact=str(out))):
            pipe("a red dress", num_inference_steps=4, height=16, width=16, use_resolution_binning=False)


def test_train_from_python_records_each_cfg_branch(saved):
    from ditcache.learn import record_pipeline, train_hyca
    from ditcache.userpipe import CallOptions

    wan = _load(saved("wan"))  # split CFG: a cond and an uncond call per step
    trajs = record_pipeline(wan, ["a red dress"], 4, options=CallOptions(height=16, width=16, num_frames=5),
                            progress=False)
    assert len(trajs) == 2 and all(len(t.inputs) == 4 for t in trajs)
    assert trajs[0].timesteps == trajs[1].timesteps
    art, shares = train_hyca(_load(saved("sana")), ["a red dress"], steps=8, height=32, width=32,
                             call_args={"use_resolution_binning": False}, progress=False)
    assert art.method == "hyca" and len(art.timesteps) == 8 and abs(sum(shares.values()) - 1) < 1e-6


def test_interrupted_training_writes_nothing(saved, tmp_path, monkeypatch, capsys):
    import ditcache.learn.l2c

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ditcache.learn.l2c, "fit_blend", interrupted)
    out = tmp_path / "router.safetensors"
    assert main(["train", "l2c", "--pipeline", saved("flux"), "--prompt", "a red dress", *SIZE, "--steps", "4",
                 "--iters", "2", "--out", str(out), "--threads", "1"]) == 130
    assert "interrupted: nothing written" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_artifact_save_is_atomic(tmp_path, monkeypatch):
    import ditcache.artifact
    from ditcache.artifact import Artifact

    art = Artifact("l2c", {"theta": torch.zeros(2, 3)}, "X:0", [1.0, 0.5], "S", {})
    path = art.save(tmp_path / "a.safetensors")
    before = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, as a shipped artifact must be

    def half_written(tensors, filename, metadata=None):
        open(filename, "wb").write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(ditcache.artifact, "save_file", half_written)
    with pytest.raises(KeyboardInterrupt):
        Artifact("l2c", {"theta": torch.ones(2, 3)}, "X:0", [1.0, 0.5], "S", {}).save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


# --------------------------------------------------------------------------- bad input, refused before work


def test_a_folder_that_is_not_a_pipeline(capsys, tmp_path, no_loading):
    (tmp_path / "config.json").write_text("{}")
    _fails(capsys, ["generate", "--pipeline", str(tmp_path), "--prompt", "a cat"],
           "not a diffusers pipeline folder", "model_index.json")
    _fails(capsys, ["bench", "--pipeline", str(tmp_path / "missing"), "--prompt", "a cat"], "no such folder")
    _fails(capsys, ["tune", "--pipeline", "nobody/nothing", "--prompt", "a cat", "--budget", "psnr>=30"],
           "nobody/nothing", "HF_HUB_OFFLINE")
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                       "unet": ["diffusers", "UNet2DConditionModel"]}))
    _fails(capsys, ["generate", "--pipeline", str(unet), "--prompt", "a cat"], "has no transformer", "unet")
    (unet / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    _fails(capsys, ["generate", "--pipeline", str(unet), "--prompt", "a cat"], "'NoSuchPipeline'",
           "not a pipeline class")


def test_an_empty_or_unreadable_prompts_file(capsys, tmp_path, no_loading, saved):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    _fails(capsys, ["generate", "--pipeline", saved("flux"), "--prompts", str(empty)], "holds no prompts")
    _fails(capsys, ["train", "l2c", "--pipeline", saved("flux"), "--prompts", str(tmp_path)], "cannot read it")
    _fails(capsys, ["bench", "--pipeline", saved("flux"), "--prompts", str(tmp_path / "none.txt")],
           "cannot read it", "No such file")
    binary = tmp_path / "prompts.bin"
    binary.write_bytes(b"\xff\xfe\xfa")
    _fails(capsys, ["tune", "--pipeline", saved("flux"), "--prompts", str(binary), "--budget", "psnr>=30"],
           "cannot read it")
    _fails(capsys, ["generate", "--pipeline", saved("flux")], "no prompts", "--prompt")


def test_options_the_pipeline_does_not_take(capsys, no_loading, saved):
    err = _fails(capsys, ["generate", "--pipeline", saved("flux"), "--prompt", "a cat", "--num-frames", "5"],
                 "FluxPipeline takes no num_frames (--num-frames)", "its call arguments:")
    assert "true_cfg_scale" in err  # the class's own arguments are listed
    _fails(capsys, ["bench", "--pipeline", saved("sd3"), "--prompt", "a cat", "--call-arg", "strength=0.5"],
           "takes no strength")
    _fails(capsys, ["generate", "--pipeline", saved("dit"), "--prompt", "a cat"], "DiTPipeline takes no 'prompt'")
    _fails(capsys, ["bench", "--pipeline", saved("flux"), "--prompt", "a cat", "--methods", "fora,l2c"],
           "l2c needs an artifact trained on this pipeline", "ditcache train l2c --pipeline")


def test_a_budget_on_an_unknown_measure(capsys, no_loading, saved):
    _fails(capsys, ["tune", "--pipeline", saved("flux"), "--prompt", "a cat", "--budget", "fid<=3"], "bad budget",
           "latent_err")
    _fails(capsys, ["tune", "--pipeline", saved("flux"), "--prompt", "a cat", "--budget", "fd<=1.05x"],
           "not measured on a pipeline")
    _fails(capsys, ["tune", "--pipeline", saved("flux"), "--prompt", "a cat", "--budget", "psnr>=30",
                    "--methods", "fora,none"], "no speed knob", "'none'")
    _fails(capsys, ["tune", "--pipeline", saved("flux"), "--prompt", "a cat", "--budget", "psnr>=30",
                    "--methods", "l2c"], "artifact")


def test_float16_on_a_cpu_without_half_matmul_warns_why(capsys, saved):
    from ditcache.userpipe import half_matmul_unusable, resolve_dtype

    if not half_matmul_unusable(torch.float16, "cpu"):
        pytest.skip("this CPU computes float16 at a usable speed")
    with pytest.warns(UserWarning, match="float16 matrix products run more than 8x slower than float32"):
        assert resolve_dtype("float16", "cpu") == torch.float32
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["generate", "--pipeline", saved("flux"), "--prompt", "a cat", *SIZE, "--steps", "2",
                     "--method", "none", "--dtype", "float16", "--out", "", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "float16" in x)
    assert line.startswith("ditcache: warning: --dtype float16 on this CPU") and "float32 instead" in line
