"""`models.features.extract`: the frozen features and source softmax the ranking scores read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from warmstart.models import ModelError, get_backbone
from warmstart.models.features import extract, source_head


def _net() -> nn.Module:
    torch.manual_seed(0)
    return get_backbone("convnet-s", in_channels=1, num_classes=10, image_size=(8, 8))


def test_extract_gives_pooled_features_and_the_heads_softmax_in_eval_mode(digits):
    x = torch.from_numpy(digits[0][:37])
    net = _net()
    net.train()
    feats, probs = extract(net, x, head=net.head, batch_size=16)  # three batches, one partial
    assert net.training and net.head.training  # modes handed back
    assert feats.shape == (37, net.num_features) and feats.dtype == np.float32
    assert probs.shape == (37, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    net.eval()
    with torch.no_grad():
        want = net.forward_features(x.float() / 255.0)
        want_p = torch.softmax(net(x.float() / 255.0), dim=1)
    np.testing.assert_allclose(feats, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, want_p.numpy(), rtol=1e-5, atol=1e-6)
    # eval mode: BatchNorm uses running statistics, so one image alone gets the same features
    alone, none = extract(net, x[:1])
    assert none is None
    np.testing.assert_allclose(alone, feats[:1], rtol=1e-5, atol=1e-6)


def test_extract_flattens_a_plain_module_and_refuses_a_bad_batch_size():
    conv = nn.Conv2d(1, 2, 3)
    x = torch.rand(5, 1, 6, 6)
    feats, probs = extract(conv, x)
    assert feats.shape == (5, 2 * 4 * 4) and probs is None
    with torch.no_grad():
        np.testing.assert_allclose(feats, conv(x).flatten(1).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size=0; use >= 1"):
        extract(conv, x, batch_size=0)


# ---- the source's own classifier (LEEP, NCE) ------------------------------------------------

FAST = dict(epochs=1, min_steps_per_epoch=1, batch_size=8, grid_images=8, num_threads=1)


def _pretrained(strategy: str, digits):
    from warmstart import models as M

    images, labels = digits[0][:48], digits[1][:48]
    return M.pretrain(
        strategy,
        backbone="convnet-s",
        in_channels=1,
        image_size=(8, 8),
        images=images,
        labels=labels,
        num_classes=10,
        config=M.PretrainConfig(**FAST),
    )


def test_supervised_pretraining_hands_over_its_head_and_label_free_none(digits):
    sup = _pretrained("supervised", digits)
    assert set(sup.head_state) == {"head.weight", "head.bias"}
    assert tuple(sup.head_state["head.weight"].shape) == (10, _net().num_features)  # 10 classes
    assert not any(k.startswith("head.") for k in sup.backbone_state)  # the trunk stays headless
    assert _pretrained("autoencoder", digits).head_state is None


def test_source_head_is_the_classifier_that_pretraining_trained(digits):
    sup = _pretrained("supervised", digits)
    net = _net()
    head = source_head(sup.head_state, net.num_features)
    assert isinstance(head, nn.Linear) and head.out_features == 10
    assert torch.equal(head.weight, sup.head_state["head.weight"])
    x = torch.from_numpy(digits[0][:9])
    feats, probs = extract(net, x, head=head)  # one pass: the softmax of the same features
    with torch.no_grad():
        want = torch.softmax(head(torch.from_numpy(feats)), dim=1).numpy()
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)


def test_no_head_a_one_output_head_and_a_foreign_head():
    assert source_head({}, 128) is None  # a trunk-only source (autoencoder, checkpoint trunk)
    gan = {"head.weight": torch.zeros(1, 128), "head.bias": torch.zeros(1)}
    assert source_head(gan, 128) is None  # a discriminator's real/fake logit: no source classes
    wide = {"head.weight": torch.zeros(5, 512), "head.bias": torch.zeros(5)}
    with pytest.raises(ModelError, match=r"do not fit a trunk of 128 features"):
        source_head(wide, 128)
