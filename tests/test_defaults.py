"""The shipped default models, the classifier, and the dataset loader."""

import gzip
import struct

import numpy as np
import pytest
import torch

from ditcache.data import CLASS_NAMES, load_fashion_mnist
from ditcache.models import NULL_CLASS, load_default
from ditcache.models.defaults import image_ids, pack, unpack


@pytest.fixture(scope="module", params=["dit", "flux"])
def model(request):
    return load_default(request.param)


def test_missing_dataset_error_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist("train", root=tmp_path)
    assert "apt-get install -y dataset-fashion-mnist" in str(err.value)
    assert "root=" in str(err.value)
    with pytest.raises(ValueError):
        load_fashion_mnist("validation", root=tmp_path)


def test_idx_reader_on_a_hand_made_file(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">iiii", 2051, 2, 28, 28) + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">ii", 2049, 2) + bytes([7, 3]))
    x, y = load_fashion_mnist("test", root=tmp_path)
    assert np.array_equal(x, images) and y.tolist() == [7, 3] and y.dtype == np.int64
    assert len(CLASS_NAMES) == 10


def test_pack_unpack_roundtrip_and_ids():
    x = torch.arange(2 * 32 * 32, dtype=torch.float32).view(2, 1, 32, 32)
    tokens = pack(x, 4)  # (2, 64, 16)
    assert tokens.shape == (2, 64, 16)
    assert tokens[0, 1].tolist() == x[0, 0, 0:4, 4:8].reshape(-1).tolist()  # token 1 = row 0, col 1
    assert torch.equal(unpack(tokens, 4), x)
    ids = image_ids(8)
    assert ids.shape == (64, 3) and ids[9].tolist() == [0.0, 1.0, 1.0]


def test_loaded_model_layout(model):
    assert not model.transformer.training
    cond, uncond = model.conditioning([0, 9])
    noise = model.initial_noise(2, seed=0)
    if model.name == "dit":
        assert noise.shape == (2, 1, 32, 32)
        assert cond["class_labels"].tolist() == [0, 9] and uncond["class_labels"].tolist() == [NULL_CLASS] * 2
    else:
        assert noise.shape == (2, 64, 16)
        assert cond["encoder_hidden_states"].shape == (2, 4, 64) and cond["pooled_projections"].shape == (2, 64)
        assert cond["img_ids"].shape == (64, 3) and torch.all(cond["txt_ids"] == 0)
        assert not torch.equal(cond["pooled_projections"], uncond["pooled_projections"])
    assert torch.equal(noise, model.initial_noise(2, seed=0))
    assert model.decode(noise).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError):
        model.conditioning([11])


def test_short_generation_is_deterministic(model):
    a = model.generate([3, 7], steps=4, seed=5)
    b = model.generate([3, 7], steps=4, seed=5)
    assert a.shape == (2, 1, 28, 28)
    assert torch.equal(a, b)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, model.generate([3, 7], steps=4, seed=6))


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(KeyError, match="dit"):
        load_default("unet")


def test_classifier_loads_and_shipped_stats_match():
    from ditcache.evaluator import FEATURE_DIM, load_classifier

    clf = load_classifier()
    x = torch.zeros(3, 1, 28, 28) - 1.0  # blank background images
    assert clf.features(x).shape == (3, FEATURE_DIM) and clf.logits(x).shape == (3, 10)
    mean, cov = clf.reference_stats("test")
    assert mean.shape == (FEATURE_DIM,) and cov.shape == (FEATURE_DIM, FEATURE_DIM) and mean.dtype == torch.float64
    assert torch.allclose(cov, cov.T)


def test_video_default_loads_its_half_precision_weights_and_generates_clips():
    model = load_default("video")  # weights stored in fp16, computed in fp32
    assert {p.dtype for p in model.transformer.parameters()} == {torch.float32}
    clips = model.generate([1, 8], steps=2, seed=0)
    assert clips.shape == (2, 8, 1, 36, 36)  # (clips, 8 frames, channel, 36x36 canvas)
    assert torch.equal(clips, model.generate([1, 8], steps=2, seed=0))


def test_training_lr_schedules_by_hand():
    from ditcache.models.train import TrainConfig, lr_at

    # 10 warm-up steps to lr 1.0, then 30 steps of linear decay reaching 0 at step 40
    linear = TrainConfig(lr=1.0, warmup_steps=10, schedule="linear")
    assert [lr_at(linear, s, 40) for s in (1, 5, 10, 11, 25, 39, 40)] == [0.1, 0.5, 1.0, 29 / 30, 0.5, 1 / 30, 0.0]
    constant = TrainConfig(lr=1.0, warmup_steps=10)
    assert [lr_at(constant, s, 40) for s in (5, 10, 40)] == [0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="constant"):
        lr_at(TrainConfig(schedule="cosine"), 20, 40)
