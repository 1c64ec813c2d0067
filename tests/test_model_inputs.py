"""What a model reads: never a padded position, whatever it holds, and always its input, from the first step.

The property tests put arbitrary values (NaN and ±inf included) in the padded positions of every built-in
component's input and of every model's (MMoLRE, its ablations, the baselines), with modalities of any
length, 0 (absent for that clip) included: valid outputs, predictions and gradients must not change.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from conftest import EMOTIONS, with_random_experts
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmolre_cli.ablation.variants import BASELINES, REMOVALS
from mmolre_cli.config import ExpertConfig, ModelConfig
from mmolre_cli.model import DataSignature
from mmolre_cli.model.build import build_model
from mmolre_cli.model.experts import ConvExpertBank
from mmolre_cli.model.masking import lengths_to_mask
from mmolre_cli.model.pretrained import takes_pretrained
from mmolre_cli.model.unitse import UniTSEBlock
from mmolre_cli.plugins import build_registry, get_plugin_manager

SIGNATURE = DataSignature({"text": 6, "audio": 3, "vision": 4}, EMOTIONS)
BATCH, LENGTH, D = 4, 5, 16
SETTINGS = settings(max_examples=4, deadline=None, derandomize=True)

# Arbitrary float32 values, NaN and ±inf first among them; lengths 0..LENGTH per clip.
JUNK = st.lists(st.sampled_from([math.nan, math.inf, -math.inf]) | st.floats(width=32), min_size=1, max_size=4)
LENGTHS = st.lists(st.integers(0, LENGTH), min_size=BATCH, max_size=BATCH)
AWKWARD = [math.nan, math.inf, -math.inf, 3e38]  # every non-finite value, and one that overflows when squared


@functools.cache
def registry():
    return build_registry(*get_plugin_manager())


def small_config(**changes) -> ModelConfig:
    values = {"d_model": D, "experts": ExpertConfig(shared=4, rank=2), "topk": 1, "dropout": 0.0}
    return ModelConfig(**{**values, **changes})


def model_configs() -> dict[str, ModelConfig]:
    """MMoLRE with every built-in encoder, router and fusion, every ablation and every baseline."""
    full = small_config()
    configs = {"mmolre": full}
    encoders = registry().names("encoder")
    # Encoders on raw input (hf_text, hf_audio) read no padded features: tests/test_raw_inputs.py covers them.
    featured = [name for name in encoders if not takes_pretrained(registry().get("encoder", name).factory)]
    configs.update({f"encoder={name}": small_config(encoder=name) for name in featured})
    configs.update({f"router={name}": small_config(router=name) for name in registry().names("router")})
    configs.update({f"fusion={name}": small_config(fusion=name) for name in registry().names("fusion")})
    for removal, change in REMOVALS.items():
        configs.update({f"-{removal}:{part}": config for part, config in change.apply(full).items()})
    configs.update({name: small_config(architecture=name) for name in BASELINES})
    return configs


MODELS = model_configs()


def padded(x: torch.Tensor, mask: torch.Tensor, junk: list[float], seed: int) -> torch.Tensor:
    """``x`` (..., B, T, D) with each padded position (mask (B, T) False) holding one of the ``junk`` values."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor(junk, dtype=x.dtype)[torch.randint(len(junk), x.shape, generator=generator)]
    return torch.where(mask[..., None], x, values)


def assert_same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert torch.isfinite(want).all()
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def same_gradients(module: torch.nn.Module, loss_of) -> None:
    """``loss_of(perturbed)`` gives each parameter the gradient ``loss_of(clean)`` gives, every one finite."""
    grads = []
    for perturbed in (False, True):
        module.zero_grad()
        loss_of(perturbed).backward()
        grads.append([p.grad.clone() for p in module.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for got, want in zip(grads[1], grads[0], strict=True):
        assert_same(got, want)


@pytest.mark.parametrize("name", ["linear", "transformer", "lstm"])
@SETTINGS
@given(lengths=LENGTHS, junk=JUNK, seed=st.integers(0, 99))
@example(lengths=[0, 1, 3, LENGTH], junk=AWKWARD, seed=0)
def test_encoders_never_read_padding(name, lengths, junk, seed):
    encoder = registry().get("encoder", name).factory(input_dim=6, d_model=D, dropout=0.0).eval()
    mask = lengths_to_mask(torch.tensor(lengths), LENGTH)
    x = torch.randn(BATCH, LENGTH, 6, generator=torch.Generator().manual_seed(seed))
    noisy = padded(x, mask, junk, seed)
    out = encoder(x, mask)
    assert_same(encoder(noisy, mask), out)
    assert (out[~mask] == 0).all()
    same_gradients(encoder, lambda perturbed: encoder(noisy if perturbed else x, mask).square().sum())


@pytest.mark.parametrize("name", ["lowrank", "dense"])
@pytest.mark.parametrize("routed", [1, 4])  # one expert per clip runs only the routed ones, four all of them
@SETTINGS
@given(lengths=LENGTHS, junk=JUNK, seed=st.integers(0, 99))
@example(lengths=[0, 1, 3, LENGTH], junk=AWKWARD, seed=0)
def test_expert_banks_never_read_padding(name, routed, lengths, junk, seed):
    bank = with_random_experts(registry().get("expert", name).factory(d_model=D, n_experts=4, rank=2, dropout=0.0))
    generator = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(torch.tensor(lengths), LENGTH)
    x = torch.randn(BATCH, LENGTH, D, generator=generator)
    scores = torch.rand(BATCH, 4, generator=generator)
    weights = torch.zeros_like(scores).scatter(-1, scores.topk(routed, -1).indices, 1.0 / routed)
    noisy = padded(x, mask, junk, seed)
    out = bank.eval()(x, mask, weights)
    assert_same(bank(noisy, mask, weights), out)
    assert (out[~mask] == 0).all()
    same_gradients(bank, lambda perturbed: bank(noisy if perturbed else x, mask, weights).square().sum())


@pytest.mark.parametrize("name", ["topk", "noisy_topk", "soft", "uniform"])
@SETTINGS
@given(lengths=LENGTHS, junk=JUNK, seed=st.integers(0, 99))
@example(lengths=[0, 1, 3, LENGTH], junk=AWKWARD, seed=0)
def test_routers_in_a_block_never_read_padding(name, lengths, junk, seed):
    tasks = ["sa", "er"]
    router = registry().get("router", name).factory
    shared = ConvExpertBank(D, 4, hidden=2, dropout=0.0)
    specific = torch.nn.ModuleDict({t: ConvExpertBank(D, 1, hidden=2, dropout=0.0) for t in tasks})
    routers = torch.nn.ModuleDict({t: router(d_model=D, n_experts=4, topk=2) for t in tasks})
    block = with_random_experts(UniTSEBlock(D, tasks, shared, routers, specific)).eval()
    mask = lengths_to_mask(torch.tensor(lengths), LENGTH)
    h = torch.randn(len(tasks), BATCH, LENGTH, D, generator=torch.Generator().manual_seed(seed))
    noisy = padded(h, mask, junk, seed)
    out, routes = block(h, mask)
    noisy_out, noisy_routes = block(noisy, mask)
    assert_same(noisy_out, out)
    assert (out[:, ~mask] == 0).all()
    for task in tasks:
        assert_same(noisy_routes[task].weights, routes[task].weights)
        assert_same(noisy_routes[task].balance_loss, routes[task].balance_loss)
    same_gradients(block, lambda perturbed: block(noisy if perturbed else h, mask)[0].square().sum())


@pytest.mark.parametrize("name", ["task_adaptive", "concat", "gated"])
@SETTINGS
@given(lengths=st.tuples(LENGTHS, LENGTHS), junk=JUNK, seed=st.integers(0, 99))
@example(lengths=([0, 0, 3, LENGTH], [0, 2, 0, 1]), junk=AWKWARD, seed=0)
def test_fusions_never_read_padding(name, lengths, junk, seed):
    fusion = registry().get("fusion", name).factory(d_model=D, modalities=["a", "v"], tasks=["sa", "er"], dropout=0.0)
    for parameter in fusion.parameters():  # the gates start at zero: drawn at random, they weigh the modalities
        torch.nn.init.normal_(parameter, std=0.5)
    generator = torch.Generator().manual_seed(seed)
    masks = {
        m: lengths_to_mask(torch.tensor(n), LENGTH + i) for i, (m, n) in enumerate(zip("av", lengths, strict=True))
    }
    features = {m: torch.randn(2, BATCH, mask.shape[1], D, generator=generator) for m, mask in masks.items()}
    noisy = {m: padded(x, masks[m], junk, seed) for m, x in features.items()}
    out = fusion.eval()(features, masks)
    assert_same(fusion(noisy, masks), out)
    same_gradients(fusion, lambda perturbed: fusion(noisy if perturbed else features, masks).square().sum())


# Which parameters of a fusion over modalities (a, v) a fusion over (a) alone has: its slice of them.
ALONE = {
    "task_adaptive": {"modality_embedding": lambda p: p[:1]},
    "concat": {"weight": lambda p: p[:, :D]},
    "gated": {"bias": lambda p: p[..., :1]},
}


@pytest.mark.parametrize("name", list(ALONE))
def test_a_fusion_ignores_a_modality_absent_for_a_clip(name):
    """For a clip without any frame of v, fusing (a, v) gives what fusing a alone gives."""
    make = registry().get("fusion", name).factory
    both = make(d_model=D, modalities=["a", "v"], tasks=["sa", "er"], dropout=0.0).eval()
    for parameter in both.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    alone = make(d_model=D, modalities=["a"], tasks=["sa", "er"], dropout=0.0).eval()
    alone.load_state_dict({key: ALONE[name].get(key, lambda p: p)(p) for key, p in both.state_dict().items()})
    masks = {"a": lengths_to_mask(torch.tensor([1, 3, 5, 5]), LENGTH), "v": lengths_to_mask(torch.zeros(4), LENGTH)}
    features = {m: torch.randn(2, BATCH, LENGTH, D) for m in "av"}
    torch.testing.assert_close(both(features, masks), alone({"a": features["a"]}, {"a": masks["a"]}))
    masks["v"] = lengths_to_mask(torch.tensor([0, 2, 0, 4]), LENGTH)  # present for clips 1 and 3 only
    fused = both(features, masks)
    expected = alone({"a": features["a"]}, {"a": masks["a"]})
    torch.testing.assert_close(fused[:, [0, 2]], expected[:, [0, 2]])
    assert not torch.allclose(fused[:, [1, 3]], expected[:, [1, 3]])


def model_inputs(seed: int, lengths: dict[str, list[int]] | None = None):
    generator = torch.Generator().manual_seed(seed)
    features, all_lengths = {}, {}
    for modality, dim in SIGNATURE.input_dims.items():
        given_lengths = (lengths or {}).get(modality)
        n = torch.randint(0, LENGTH + 1, (BATCH,), generator=generator) if given_lengths is None else given_lengths
        all_lengths[modality] = torch.as_tensor(n)
        features[modality] = torch.randn(BATCH, LENGTH, dim, generator=generator)
    return features, all_lengths


@pytest.mark.parametrize("name", list(MODELS))
@SETTINGS
@given(junk=JUNK, seed=st.integers(0, 99))
@example(junk=AWKWARD, seed=0)
def test_no_model_reads_padding(name, junk, seed):
    config = MODELS[name]
    model = with_random_experts(build_model(config, SIGNATURE, registry()), seed).eval()
    # Some clip lacks each modality, one lacks all of them.
    lengths = {"text": [0, 1, 5, 3], "audio": [0, 5, 0, 2], "vision": [0, 2, 4, 0]}
    features, lengths = model_inputs(seed, lengths if seed % 2 == 0 else None)
    masks = {m: lengths_to_mask(n, LENGTH) for m, n in lengths.items()}
    noisy = {m: padded(x, masks[m], junk, seed) for m, x in features.items()}
    reference, output = model(features, lengths), model(noisy, lengths)
    for task in config.tasks:
        assert_same(output.predictions[task], reference.predictions[task])
    for key, route in reference.routes.items():
        assert_same(output.routes[key].weights, route.weights)

    def loss(perturbed: bool) -> torch.Tensor:
        predictions = model(noisy if perturbed else features, lengths).predictions
        return sum(prediction.square().sum() for prediction in predictions.values())

    same_gradients(model, loss)


# ---------------------------------------------------------------- the start of training


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_sees_its_input_at_initialisation(name):
    """As built, each model's predictions differ between clips and change with the input, and its encoders
    get a gradient from the first step; so do the gates of the gated baselines (MMoE, CGC)."""
    config = MODELS[name]
    torch.manual_seed(0)
    model = build_model(config, SIGNATURE, registry()).eval()
    full = {m: [LENGTH] * BATCH for m in SIGNATURE.input_dims}
    features, lengths = model_inputs(0, full)
    other = {m: x + torch.randn_like(x) for m, x in features.items()}
    predictions, changed = model(features, lengths).predictions, model(other, lengths).predictions
    for task in config.tasks:
        assert not torch.allclose(predictions[task], predictions[task][:1].expand_as(predictions[task]))
        assert not torch.allclose(predictions[task], changed[task])
    sum(p.square().sum() for p in predictions.values()).backward()
    encoders = [p for p in model.encoders.parameters() if p.dim() > 1]
    gates = [p for p in getattr(model, "gates", torch.nn.Module()).parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoders + gates)
    if config.architecture in ("mmoe", "cgc"):
        assert gates


def test_gated_baselines_start_as_their_papers_experts_do():
    """MMoE's experts, on no residual path, start at a Conv1d's default initialisation; MMoLRE's and HPS's
    residual experts start at zero (their blocks start as the identity path)."""
    mmoe = build_model(small_config(architecture="mmoe"), SIGNATURE, registry())
    bound = D**-0.5
    for bank in mmoe.shared.values():
        assert bank.down_weight.abs().max() <= bound and bank.down_weight.std() > bound / 4
    for architecture in ("mmolre", "hps"):
        model = build_model(small_config(architecture=architecture), SIGNATURE, registry())
        banks = [m for m in model.modules() if isinstance(m, ConvExpertBank)]
        assert banks and all((bank.down_weight == 0).all() for bank in banks)
