"""The coverage listing: every class in diffusers.models.transformers mapped or refused with a reason, the
README's tables equal to `ditcache models --markdown`, and every mapped class run at a tiny size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import ditcache
from ditcache import adapters, coverage
from test_families import CASES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.fixture(scope="module")
def rows():
    return coverage.listing()


def test_every_class_is_mapped_or_has_a_reason(rows):
    assert len(rows) >= 70  # diffusers 0.42.1 exports 76 nn.Module classes from models.transformers
    for r in rows:
        assert r.mapped or r.reason, r.cls
        if r.mapped:
            assert r.sites and r.family and "fora" in r.methods, r.cls
            assert ("clusca" in r.methods) <= r.token_path  # ClusCa needs a token path


def test_every_mapped_class_has_a_tiny_case(rows):
    """tests/test_families.py runs each mapped class at a tiny size; a class mapped on the meta device but
    never run would be an untested claim."""
    missing = [r.cls for r in rows if r.mapped and r.cls not in CASES]
    assert not missing


def test_unmapped_classes_are_refused_with_their_reason(rows):
    for r in rows:
        if r.mapped or r.cls not in adapters.UNMAPPED:
            continue
        cls = getattr(__import__("diffusers.models.transformers", fromlist=[r.cls]), r.cls)
        with torch.device("meta"):
            model = cls(**adapters.META.get(r.cls, {}))
        with pytest.raises(TypeError, match=re.escape(adapters.UNMAPPED[r.cls])):
            ditcache.apply(model, ditcache.FORA())


def test_readme_tables_are_the_listing(rows):
    section = re.search(r"<!-- models:start -->\n(.*?)\n<!-- models:end -->", README, re.S)
    assert section is not None, "README lost its models markers"
    assert section.group(1) == coverage.markdown(rows), (
        "README's supported-models tables differ from the code: regenerate them with "
        "`ditcache models --markdown`")


def test_cli_prints_the_listing(capsys):
    from ditcache.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert re.match(r"\d+ of \d+ diffusers transformer classes mapped", out)
    assert "FluxTransformer2DModel" in out and "Not mapped:" in out
