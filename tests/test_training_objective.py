"""What training optimises and selects on: weight-decay groups, the selection loss, data-parallel
gradients equal to one process's, and deterministic kernels on request."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import yaml
from conftest import EMOTIONS, random_inputs, with_random_experts
from torch import nn
from typer.testing import CliRunner

from mmolre_cli.cli.app import app
from mmolre_cli.config import ExpertConfig, ModelConfig, TrainConfig
from mmolre_cli.model import DataSignature, MMoLRE, multitask_loss
from mmolre_cli.plugins import build_registry, get_plugin_manager
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.distributed import Context
from mmolre_cli.training.evaluate import evaluate
from mmolre_cli.training.optimizer import build_optimizer, parameter_groups
from mmolre_cli.training.trainer import training_loss

SIGNATURE = DataSignature({"text": 24, "audio": 5, "vision": 7}, EMOTIONS)


def small_model(seed: int = 0, **changes) -> MMoLRE:
    values = {"d_model": 16, "experts": ExpertConfig(shared=4, rank=4, dropout=0.0), "topk": 2, "dropout": 0.0}
    torch.manual_seed(seed)
    model = MMoLRE(ModelConfig(**{**values, **changes}), SIGNATURE, build_registry(*get_plugin_manager()))
    return with_random_experts(model, seed)


def labelled_split(n: int = 8, seed: int = 0) -> TensorSplit:
    """``n`` random clips; sentiment unknown for clip 3, emotions unknown for clips 0, 1, 3 and 5 (half)."""
    features, lengths = random_inputs(SIGNATURE, batch=n, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    sentiment = torch.randn(n, generator=generator)
    sentiment[3] = float("nan")
    emotion = torch.rand(n, len(EMOTIONS), generator=generator).round()
    emotion[[0, 1, 3, 5]] = float("nan")
    return TensorSplit(features, lengths, sentiment, emotion)


# Weight decay


class WithEmbedding(nn.Module):
    """A plugin-like module: an embedding table, a vector of scales and a query it exempts by name."""

    no_weight_decay = ("query",)

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(10, 4)
        self.scale = nn.Parameter(torch.ones(4))
        self.query = nn.Parameter(torch.zeros(2, 4))
        self.project = nn.Linear(4, 4)


def test_weight_decay_spares_norms_biases_embeddings_and_fusion_queries():
    model = small_model(normalize="frame")  # a LayerNorm on each modality's frames
    decay, no_decay = ({name for name, _ in group} for group in parameter_groups(model))
    assert decay.isdisjoint(no_decay) and decay | no_decay == {name for name, _ in model.named_parameters()}
    assert {"fusion.queries", "fusion.modality_embedding", "fusion.gate", "fusion.norm.weight"} <= no_decay
    assert {"normalize.text.norm.weight", "heads.sa.0.bias", "unitse.text.blocks.0.shared.down_bias"} <= no_decay
    assert all(name.endswith(("weight", "bias")) for name in no_decay - {"fusion.queries", "fusion.modality_embedding",
                                                                           "fusion.gate"})  # fmt: skip
    assert {"encoders.text.project.weight", "fusion.attention.in_proj_weight", "heads.er.0.weight"} <= decay
    assert {"unitse.text.blocks.0.shared.up.weight", "unitse.text.blocks.0.shared.down_weight"} <= decay
    assert "unitse.text.blocks.0.routers.sa.gate.weight" in decay
    assert not any("norm" in name or name.endswith("bias") for name in decay)
    gated = small_model(fusion="gated")
    assert "fusion.score" in {name for name, _ in parameter_groups(gated)[1]}
    plugin_decay, plugin_no_decay = ({name for name, _ in group} for group in parameter_groups(WithEmbedding()))
    assert (plugin_decay, plugin_no_decay) == ({"project.weight"}, {"table.weight", "scale", "query", "project.bias"})


def test_adamw_decays_exactly_the_decayed_group():
    model = small_model()
    optimizer = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5))
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)  # only weight decay moves a parameter
    optimizer.step()
    moved = {name for name, parameter in model.named_parameters() if not torch.equal(parameter, before[name])}
    decayed = {name for name, parameter in parameter_groups(model)[0] if parameter.count_nonzero()}
    assert moved == decayed and len(moved) > 10


# The selection loss


def test_the_validation_loss_does_not_depend_on_the_balance_coefficient():
    split = labelled_split(16)
    weak = small_model(balance_coef=0.01).eval()
    strong = small_model(balance_coef=3.0).eval()
    strong.load_state_dict(weak.state_dict())
    low, high = (evaluate(model, split, None, batch_size=8) for model in (weak, strong))
    assert low["loss_balance"] == pytest.approx(high["loss_balance"]) and low["loss_balance"] > 0.5
    assert low["loss"] == pytest.approx(low["loss_sa"] + low["loss_er"], rel=1e-6)
    assert high["loss"] == pytest.approx(low["loss"], rel=1e-6)
    # The training objective keeps the balance term by its coefficient.
    batch = split.batch(torch.arange(16))
    output = weak(batch.features, batch.lengths)
    objective, parts = multitask_loss(output, batch.sentiment, batch.emotion, strong.config, None)
    assert objective.item() == pytest.approx((parts["sa"] + parts["er"] + 3.0 * parts["balance"]).item(), rel=1e-6)


# Data-parallel gradients


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}


def ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    """One rank of a DDP step on its share of the global batch: the gradients DDP leaves, with the
    trainer's loss and with each rank's own mean instead."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        context, split = Context(rank, world), labelled_split()
        (index,) = split.batch_indices(len(split), rank=rank, world=world)  # the trainer's share of one batch
        batch = split.batch(index)
        model = small_model(balance_coef=0.0)
        ddp = nn.parallel.DistributedDataParallel(model)
        found = {}
        for name, context_used in (("global", context), ("per_rank", Context())):
            model.zero_grad(set_to_none=True)
            loss, _ = training_loss(ddp(batch.features, batch.lengths), batch, model.config, None, context_used)
            loss.backward()
            found[name] = gradients(model)
        if rank == 0:
            torch.save(found, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_ranks_step_with_the_gradient_of_one_process_on_the_same_global_batch(tmp_path):
    split = labelled_split()
    # The labels fall unevenly among the ranks: emotions on 3 of rank 0's 4 clips and 1 of rank 1's.
    shares = [split.batch_indices(len(split), rank=rank, world=2)[0] for rank in (0, 1)]
    assert [int((~split.emotion[share].isnan().any(-1)).sum()) for share in shares] == [3, 1]
    out = tmp_path / "gradients.pt"
    torch.multiprocessing.spawn(ddp_worker, args=(2, str(tmp_path / "store"), str(out)), nprocs=2, join=True)
    found = torch.load(out)

    model = small_model(balance_coef=0.0)
    batch = split.batch(torch.arange(len(split)))
    loss, _ = training_loss(model(batch.features, batch.lengths), batch, model.config, None)
    loss.backward()
    single = gradients(model)
    for name, gradient in single.items():
        torch.testing.assert_close(found["global"][name], gradient, rtol=0, atol=1e-5, msg=name)
    # Each rank dividing by its own labelled count would step with another gradient.
    assert max((found["per_rank"][name] - gradient).abs().max().item() for name, gradient in single.items()) > 1e-3


# Determinism


@pytest.fixture
def restored_determinism(monkeypatch):
    """The process-wide flags ``--deterministic`` sets, restored after the test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic)  # fmt: skip
    yield
    torch.use_deterministic_algorithms(flags[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[1:]


def test_deterministic_sets_torch_cudnn_and_cublas(tiny_data, tmp_path, restored_determinism):
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    torch.backends.cudnn.benchmark = True
    args = ["--d-model", "16", "--experts", "shared=2,rank=4", "--topk", "1", "--epochs", "1", "--no-track"]
    result = CliRunner().invoke(app, ["train", "--data", str(tiny_data), *args, "--deterministic", "--out",
                                      str(tmp_path / "run")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]["deterministic"] is True
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
