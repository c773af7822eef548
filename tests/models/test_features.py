"""`models.features.extract`: the frozen features and source softmax the ranking scores read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from warmstart.models import get_backbone
from warmstart.models.features import extract


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
