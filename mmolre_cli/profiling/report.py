"""Profile one model configuration: parameters, FLOPs executed and active, and measured speed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmolre_cli.config import ModelConfig, RunConfig, check_device
from mmolre_cli.data.shapes import DataShapes
from mmolre_cli.errors import UsageError
from mmolre_cli.model import DataSignature, multitask_loss
from mmolre_cli.model.build import build_model, resolve_model
from mmolre_cli.plugins.registry import Registry
from mmolre_cli.profiling.components import parameter_report
from mmolre_cli.profiling.flops import count_forward, count_training, random_batch
from mmolre_cli.profiling.formulas import expert_hidden, expert_parameters, unitse_macs
from mmolre_cli.profiling.timing import summarize, time_calls
from mmolre_cli.training.batches import Batch
from mmolre_cli.training.evaluate import forward


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; unset means CUDA when present, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {name!r} (valid: cpu, cuda, cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: unknown device {name!r} (valid: cpu, cuda, cuda:N)")
    check_device(name)
    return device


def static_counts(model: nn.Module, shapes: DataShapes, batch: int, device: torch.device | str) -> dict[str, Any]:
    """Parameters; FLOPs of a forward pass at batch 1 and at ``batch``, and of a training step at ``batch``."""
    one = random_batch(shapes, model.modalities, 1, device, model.encoders)
    forward = count_forward(model, one)
    forward_batch = count_forward(model, random_batch(shapes, model.modalities, batch, device, model.encoders))
    return {
        "parameters": parameter_report(model, forward.pop("chosen_shares")),
        "forward": forward,
        "forward_batch": {key: forward_batch[key] for key in ("batch_size", "executed", "active")},
        "train_step": count_training(model, random_batch(shapes, model.modalities, batch, device, model.encoders)),
    }


def real_model(config: ModelConfig, signature: DataSignature, registry: Registry, device) -> nn.Module:
    """The model with seeded initial weights on ``device``."""
    torch.manual_seed(0)
    return build_model(config, signature, registry).to(device)


def cross_check(config: ModelConfig, counts: dict[str, Any], shapes: DataShapes) -> dict[str, Any]:
    """The counter's forward MACs of all experts and routers, and one expert's parameters, against formulas
    (None where there is no formula: plugin experts or routers, and the baseline architectures)."""
    groups = counts["forward"]["by_group"]
    counted = sum(groups[g] for g in ("shared_experts", "specific_experts", "routers")) // 2
    mmolre = config.architecture == "mmolre"
    formula = unitse_macs(config, shapes.lengths, batch=1) if mmolre else None
    hidden = expert_hidden(config) if mmolre else None
    unitse = counts["parameters"]["unitse"]
    first = next(iter(unitse.values()))[0] if unitse else None
    per_expert = None
    if first and first["shared_experts"]:
        per_expert = first["shared_experts"] // config.experts.shared
    elif first and first["specific_experts"]:
        per_expert = first["specific_experts"] // len(config.tasks)
    return {
        "experts_routers_forward_macs": {
            "counted": counted,
            "formula": formula,
            "relative_error": abs(counted - formula) / formula if formula else None,
        },
        "parameters_per_expert": {
            "counted": per_expert,
            "formula": expert_parameters(config.d_model, hidden) if hidden is not None and per_expert else None,
        },
    }


def measure(
    model: nn.Module, config: RunConfig, shapes: DataShapes, counts: dict[str, Any], *, device, repeats, warmup
) -> dict[str, Any]:
    """Latency and throughput of a forward pass at batch 1 and at the batch size, and of a full training
    step (forward in ``train.precision``, loss, backward, AdamW update)."""
    size, precision = config.train.batch_size, config.train.precision
    one, many = (random_batch(shapes, model.modalities, n, device, model.encoders) for n in (1, size))

    def infer(batch: Batch) -> None:
        with torch.no_grad():
            forward(model, batch, precision)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        output = forward(model, many, precision)
        multitask_loss(output, many.sentiment, many.emotion, model.config, None)[0].backward()
        optimizer.step()

    model.eval()
    timing = {
        "forward": summarize(time_calls(lambda: infer(one), device, repeats, warmup), 1,
                             counts["forward"]["executed"]["flops"]),
        "forward_batch": summarize(time_calls(lambda: infer(many), device, repeats, warmup), size,
                                   counts["forward_batch"]["executed"]["flops"]),
    }  # fmt: skip
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_calls(train_step, device, repeats, warmup)
    timing["train_step"] = summarize(seconds, size, counts["train_step"]["executed"]["flops"])
    if device.type == "cuda":
        timing["train_step"]["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return timing


def profile_configuration(
    config: RunConfig,
    shapes: DataShapes,
    registry: Registry,
    *,
    device: torch.device,
    repeats: int = 10,
    warmup: int = 3,
) -> dict[str, Any]:
    """Everything ``mmolre profile`` reports for one configuration; no timing when ``repeats`` is 0."""
    model_config, signature = resolve_model(config.model, shapes)
    model = real_model(model_config, signature, registry, device)
    counts = static_counts(model, shapes, config.train.batch_size, device)
    timing = None
    if repeats > 0:
        timing = measure(model, config, shapes, counts, device=device, repeats=repeats, warmup=warmup)
    experts = model_config.experts
    not_counted = counts["forward"].pop("not_counted")
    return {
        "model": {
            "d_model": model_config.d_model,
            "experts": {"shared": experts.shared, "rank": experts.rank, "type": experts.type},
            "topk": model_config.topk,
            "router": model_config.router,
            "fusion": model_config.fusion,
            "encoders": {m: model_config.encoder_for(m) for m in model_config.modalities},
            "blocks": model_config.blocks,
            "tasks": model_config.tasks,
        },
        "parameters": counts["parameters"],
        "flops": {key: counts[key] for key in ("forward", "forward_batch", "train_step")},
        "not_counted": not_counted,
        "check": cross_check(model_config, counts, shapes),
        "timing": timing,
    }
