"""One list of fusion and loss names (bmdkit.registry), and one forward contract for fusions."""

import ast
import inspect
from pathlib import Path

import pytest
import torch

import bmdkit
from bmdkit.errors import ParameterError
from bmdkit.nn import create_fusion, fusion_class, fusion_names
from bmdkit.registry import FUSIONS, LOSSES

PACKAGE = Path(bmdkit.__file__).resolve().parent


def _name_lists(names):
    """``{file:line: names}`` of every tuple, list, set or dict literal in bmdkit (but the
    registry) holding two or more of ``names`` as strings: a copy of a registry's list."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = (node.keys if isinstance(node, ast.Dict) else
                     node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [])
            listed = {item.value for item in items
                      if isinstance(item, ast.Constant) and item.value in names}
            if len(listed) >= 2:
                found[f"{path.relative_to(PACKAGE)}:{node.lineno}"] = sorted(listed)
    return found


@pytest.mark.parametrize("registry", [FUSIONS, LOSSES], ids=lambda r: r.kind)
def test_names_are_listed_in_the_registry_only(registry):
    assert _name_lists(set(registry.names())) == {}


def test_the_named_estimators_labels_and_choices_come_from_the_registry():
    from bmdkit.cli import MODELS
    from bmdkit.estimators import model_label

    assert MODELS == fusion_names() == FUSIONS.names()
    for name in FUSIONS.names():
        entry = FUSIONS.entry(name)
        cls = getattr(bmdkit, entry.estimator)
        assert cls.fusion == name and cls.__module__ == "bmdkit.estimators"
        assert cls.__doc__.startswith(entry.summary)
        assert {k: cls().get_params()[k] for k in entry.estimator_defaults} == \
            entry.estimator_defaults
        assert FUSIONS.labels()[name] == model_label(name) == entry.label
    assert model_label("xattn", "weighted_smooth_l1") == "XAttn +wSL1"


def test_an_unknown_name_is_named_with_the_registered_ones():
    with pytest.raises(ParameterError, match="fusion must be one of 'xattn', 'concat'"):
        fusion_class("film")
    with pytest.raises(ParameterError, match="loss must be one of 'smooth_l1'"):
        LOSSES.entry("huber")


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_takes_the_same_arguments_and_gives_attention_from_its_own_method(name):
    cls = fusion_class(name)
    assert list(inspect.signature(cls.forward).parameters) == [
        "self", "image_tokens", "numeric", "categorical", "image_positions"]
    fusion = create_fusion(name, embed_dim=8, n_numeric=2, cardinalities=[3], n_heads=2,
                           n_layers=1).eval()
    image = torch.randn(4, 2, 8) if cls.uses_image else None
    inputs = (image, torch.randn(4, 2), torch.tensor([[0], [1], [2], [0]]), torch.randn(2, 8))
    fused = fusion(*inputs)
    assert fused.shape == (4, fusion.out_features)  # one vector, with or without attention
    if cls.has_attention:
        again, attention = fusion.forward_attention(*inputs)
        assert torch.allclose(again, fused) and "image_pooling" in attention
    else:
        with pytest.raises(ParameterError, match=f"not '{name}'"):
            fusion.forward_attention(*inputs)
