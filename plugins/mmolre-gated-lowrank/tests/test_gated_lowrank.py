"""The gated low-rank expert: contract, batching, padding, and use through mmolre's registry and CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from mmolre_gated_lowrank import gated_lowrank_experts
from mmolre_gated_lowrank.bank import GatedLowRankBank, parameter_count
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import ExpertConfig, ModelConfig
from mmolre_cli.data.canonical import write_canonical
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.model import DataSignature, MMoLRE
from mmolre_cli.plugins import build_registry, get_plugin_manager
from mmolre_cli.plugins.contracts import smoke_check


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.delenv("MMOLRE_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MMOLRE_PLUGINS_DIR", raising=False)
    return build_registry(*get_plugin_manager())


def padded_batch(batch: int = 4, length: int = 9, d_model: int = 16, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, 5, 1, 3])[:batch]
    mask = torch.arange(length)[None, :] < lengths[:, None]
    x = torch.randn(batch, length, d_model, generator=generator) * mask[..., None]
    return x, mask


def test_the_entry_point_registers_the_expert(registry):
    component = registry.get("expert", "gated_lowrank")
    assert component.plugin == "gated_lowrank" and registry.failures == []


def test_meets_the_expert_contract(registry):
    smoke_check(registry.get("expert", "gated_lowrank"))


def test_the_batched_bank_equals_each_expert_computed_alone():
    torch.manual_seed(0)
    bank = GatedLowRankBank(16, n_experts=3, rank=4, dropout=0.0).eval()
    x, mask = padded_batch()
    weights = torch.softmax(torch.randn(4, 3), -1)
    expected = torch.zeros_like(x)
    up_weight = bank.up.weight.view(3, 2, 4, 16, 3)  # n (value, gate) r d k
    up_bias = bank.up.bias.view(3, 2, 4)
    for n in range(3):  # the reference loops over experts; the bank must not need to
        value = F.conv1d(x.transpose(1, 2), up_weight[n, 0], up_bias[n, 0], padding=1)
        gate = F.conv1d(x.transpose(1, 2), up_weight[n, 1], up_bias[n, 1], padding=1)
        out = (value * F.silu(gate)).transpose(1, 2) @ bank.down_weight[n] + bank.down_bias[n]
        expected += weights[:, n, None, None] * out
    with torch.no_grad():
        assert torch.allclose(bank(x, mask, weights), expected * mask[..., None], atol=1e-5)


def test_padding_never_leaks():
    bank = GatedLowRankBank(16, n_experts=4, rank=4, dropout=0.0).eval()
    x, mask = padded_batch()
    weights = torch.full((4, 4), 0.25)
    noisy = x + torch.randn_like(x) * ~mask[..., None]
    with torch.no_grad():
        out, out_noisy = bank(x, mask, weights), bank(noisy, mask, weights)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    assert torch.allclose(out[mask], out_noisy[mask], atol=1e-6)


@pytest.mark.parametrize("n_experts", [1, 8])
def test_all_experts_run_in_one_convolution(n_experts):
    bank = GatedLowRankBank(16, n_experts=n_experts, rank=4)
    calls = []
    bank.up.register_forward_hook(lambda *_: calls.append(1))
    x, mask = padded_batch()
    bank(x, mask, torch.ones(4, n_experts) / n_experts)
    assert len(calls) == 1


def test_parameter_count_is_exact():
    bank = gated_lowrank_experts(d_model=32, n_experts=4, rank=8, dropout=0.1)
    assert sum(p.numel() for p in bank.parameters()) == parameter_count(32, 4, 8)


def test_mmolre_trains_with_it(registry):
    config = ModelConfig(d_model=16, experts=ExpertConfig(shared=4, rank=4, type="gated_lowrank"))
    signature = DataSignature({"text": 12, "audio": 5}, ["happy", "sad"])
    model = MMoLRE(config, signature, registry)
    x, mask = padded_batch(length=9, d_model=12)
    audio, _ = padded_batch(length=9, d_model=5)
    lengths = mask.sum(1)
    output = model({"text": x, "audio": audio}, {"text": lengths, "audio": lengths})
    loss = output.predictions["sa"].square().mean() + output.predictions["er"].square().mean()
    (loss + output.aux_losses["balance"]).backward()
    banks = [m for m in model.modules() if isinstance(m, GatedLowRankBank)]
    assert len(banks) == 2 * 2 * 3  # modalities × blocks × (shared + one per task)
    # A top-k router may leave an expert unused in a batch, so each bank, not each expert, must learn.
    assert all(any(p.grad is not None and p.grad.abs().sum() > 0 for p in bank.parameters()) for bank in banks)


def test_mmolre_train_uses_it(tmp_path):
    data = tmp_path / "tiny.h5"
    write_canonical(generate_synthetic(like="mosei", scale=0.01, seed=1, seq_len=12), data)
    args = ["train", "--data", str(data), "--experts", "type=gated_lowrank,shared=4,rank=8", "--topk", "2"]
    args += ["--d-model", "16", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-track", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["selected_epoch"] == 1
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "type: gated_lowrank" in saved
