"""The model's invariants: routing, padding, parameter counts, batched experts, missing labels."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import random_inputs, with_random_experts
from torch import nn

from mmolre_cli.config import ExpertConfig, ModelConfig
from mmolre_cli.model import MMoLRE, multitask_loss
from mmolre_cli.model.experts import ConvExpertBank, lowrank_parameter_count
from mmolre_cli.model.loss import SplitLoss
from mmolre_cli.model.routers import SoftRouter, TopKRouter, UniformRouter, switch_balance_loss


def small_config(**changes) -> ModelConfig:
    values = {"d_model": 16, "experts": ExpertConfig(shared=4, rank=4), "topk": 2, "dropout": 0.0}
    values.update(changes)
    return ModelConfig(**values)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_router_uses_exactly_k_experts(k):
    router = TopKRouter(d_model=8, n_experts=5, topk=k)
    route = router(torch.randn(32, 8))
    assert ((route.weights > 0).sum(-1) == k).all()
    if k > 1:
        torch.testing.assert_close(route.weights.sum(-1), torch.ones(32))


def test_top1_router_still_gets_a_gradient():
    router = TopKRouter(d_model=8, n_experts=4, topk=1)
    route = router(torch.randn(16, 8))
    route.weights.sum().backward()
    assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0


def test_noisy_router_adds_noise_only_in_training():
    router = TopKRouter(d_model=8, n_experts=6, topk=2, noisy=True)
    pooled = torch.randn(64, 8)
    router.eval()
    torch.testing.assert_close(router(pooled).weights, router(pooled).weights)
    router.train()
    assert not torch.equal(router(pooled).weights, router(pooled).weights)


def test_balance_loss_is_one_for_an_even_router_and_larger_otherwise():
    even = torch.full((8, 4), 0.25)
    chosen = torch.arange(8).remainder(4)[:, None]
    assert switch_balance_loss(even, chosen).item() == pytest.approx(1.0)
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1)
    assert switch_balance_loss(skewed, torch.zeros(8, 1, dtype=torch.long)).item() == pytest.approx(4 * 0.7)
    soft = SoftRouter(8, 4, 2)
    nn.init.zeros_(soft.gate.bias)
    assert soft(torch.zeros(3, 8)).balance_loss.item() == pytest.approx(1.0)
    assert (UniformRouter(8, 4, 2)(torch.randn(3, 8)).weights == 0.25).all()


@pytest.mark.parametrize("d,n,r", [(16, 1, 4), (32, 4, 8), (64, 8, 32)])
def test_lowrank_parameter_count_matches_formula(d, n, r):
    bank = ConvExpertBank(d, n, hidden=r)
    assert sum(p.numel() for p in bank.parameters()) == lowrank_parameter_count(d, n, r) == n * (4 * d * r + r + d)


@pytest.mark.parametrize("n,routed", [(3, None), (4, 2), (4, 1), (8, 2)])
def test_expert_bank_equals_a_loop_over_separate_experts(n, routed):
    """Values and gradients, whether the bank runs every expert or (k ≤ N/4) only the routed ones."""
    d, r, batch, length = 12, 5, 4, 9
    bank = with_random_experts(ConvExpertBank(d, n, hidden=r, dropout=0.0).eval())
    x = torch.randn(batch, length, d, requires_grad=True)
    mask = torch.arange(length)[None, :] < torch.tensor([9, 7, 3, 1])[:, None]
    scores = torch.rand(batch, n, requires_grad=True)
    if routed is None:
        weights = scores
    else:
        kept, chosen = scores.topk(routed, -1)
        weights = torch.zeros(batch, n).scatter(-1, chosen, kept.softmax(-1))
    expected = torch.zeros(batch, length, d)
    for i in range(n):
        rows = slice(i * r, (i + 1) * r)
        up = nn.functional.conv1d((x * mask[..., None]).transpose(1, 2), bank.up.weight[rows], bank.up.bias[rows], 1, 1)
        out = nn.functional.gelu(up).transpose(1, 2) @ bank.down_weight[i] + bank.down_bias[i]
        expected = expected + weights[:, i, None, None] * out
    expected = expected * mask[..., None]
    actual = bank(x, mask, weights)
    torch.testing.assert_close(actual, expected)
    leaves = [x, scores, *bank.parameters()]
    got = torch.autograd.grad(actual.square().sum(), leaves, retain_graph=True)
    for grad, want in zip(got, torch.autograd.grad(expected.square().sum(), leaves), strict=True):
        torch.testing.assert_close(grad, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ["linear", "transformer", "lstm"])
@pytest.mark.parametrize("fusion", ["task_adaptive", "concat", "gated"])
def test_padding_never_changes_valid_outputs(registry, signature, encoder, fusion):
    model = with_random_experts(MMoLRE(small_config(encoder=encoder, fusion=fusion), signature, registry).eval())
    features, lengths = random_inputs(signature)
    reference = model(features, lengths)
    noisy = {}
    for m, x in features.items():
        padded = torch.arange(x.shape[1])[None, :] >= lengths[m][:, None]
        noisy[m] = x + 100 * torch.randn_like(x) * padded[..., None]
    longer = {m: torch.cat([x, torch.randn(x.shape[0], 5, x.shape[2])], dim=1) for m, x in features.items()}
    for changed in (noisy, longer):
        output = model(changed, lengths)
        for task in model.tasks:
            torch.testing.assert_close(output.predictions[task], reference.predictions[task])


def test_batch_without_emotion_labels_gives_er_head_zero_gradient(registry, signature):
    config = small_config()
    model = MMoLRE(config, signature, registry)
    features, lengths = random_inputs(signature)
    output = model(features, lengths)
    emotion = torch.full((6, 6), float("nan"))
    loss, parts = multitask_loss(output, torch.randn(6), emotion, config, None)
    assert parts["er"].item() == 0.0
    loss.backward()
    for parameter in model.heads["er"].parameters():
        assert parameter.grad is None or torch.count_nonzero(parameter.grad) == 0
    assert any(torch.count_nonzero(p.grad) > 0 for p in model.heads["sa"].parameters())


def test_missing_sentiment_labels_are_ignored(registry, signature):
    config = small_config()
    model = MMoLRE(config, signature, registry)
    output = model(*random_inputs(signature))
    sentiment = torch.tensor([0.5, float("nan"), -1.0, float("nan"), 2.0, 0.0])
    _, parts = multitask_loss(output, sentiment, torch.rand(6, 6), config, None)
    known = ~torch.isnan(sentiment)
    expected = (output.predictions["sa"][known] - sentiment[known]).abs().mean()
    torch.testing.assert_close(parts["sa"], expected)


def test_a_split_loss_averages_each_task_over_the_samples_labelled_for_it(registry, signature):
    config = small_config(task_weights={"sa": 1.0, "er": 2.0})
    model = with_random_experts(MMoLRE(config, signature, registry)).eval()
    features, lengths = random_inputs(signature)
    sentiment = torch.tensor([0.5, float("nan"), -1.0, 1.5, 2.0, 0.0])
    emotion = torch.rand(6, 6)
    emotion[:4] = float("nan")  # the first batch has no emotion labels, the second one of three
    _, whole = multitask_loss(model(features, lengths), sentiment, emotion, config, None)
    losses = SplitLoss()
    for rows in (slice(0, 3), slice(3, 6)):
        output = model({m: x[rows] for m, x in features.items()}, {m: n[rows] for m, n in lengths.items()})
        _, parts = multitask_loss(output, sentiment[rows], emotion[rows], config, None)
        losses.add(parts, sentiment[rows], emotion[rows])
    means = losses.means(config)
    assert means["sa"] == pytest.approx(whole["sa"].item()) and means["er"] == pytest.approx(whole["er"].item())
    assert means["loss"] == pytest.approx(means["sa"] + 2.0 * means["er"])  # the task loss: no balance term
    unlabelled = SplitLoss()
    unlabelled.add(parts, sentiment[3:], torch.full((3, 6), float("nan")))
    assert math.isnan(unlabelled.means(config)["er"]) and "er" in unlabelled.means(config)


@pytest.mark.parametrize("router", ["topk", "noisy_topk", "soft", "uniform"])
def test_every_router_trains_the_whole_model(registry, signature, router):
    config = small_config(router=router)
    model = MMoLRE(config, signature, registry)
    output = model(*random_inputs(signature))
    assert output.predictions["sa"].shape == (6,) and output.predictions["er"].shape == (6, 6)
    # 3 modalities × 2 blocks × 2 tasks routers
    assert len(output.routes) == 12
    loss, _ = multitask_loss(output, torch.randn(6), torch.rand(6, 6), config, None)
    loss.backward()
    assert all(p.grad is not None for p in model.heads.parameters())


def test_switches_change_the_structure(registry, signature):
    def count(**changes):
        return sum(p.numel() for p in MMoLRE(small_config(**changes), signature, registry).parameters())

    full = count()
    assert count(unitse=False) < full
    assert count(shared_experts=False) < full
    assert count(specific_experts=False) < full
    assert count(blocks=1) < full
    dense = small_config(experts=ExpertConfig(shared=4, rank=4, type="dense"))
    assert sum(p.numel() for p in MMoLRE(dense, signature, registry).parameters()) > full
    model = MMoLRE(small_config(shared_experts=False), signature, registry)
    assert model(*random_inputs(signature)).routes == {}
