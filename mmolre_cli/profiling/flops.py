"""FLOP counting with torch's FlopCounterMode: totals, per component, executed and active.

FlopCounterMode counts matrix products and convolutions (and attention kernels) only. Its split by
module is reliable for a forward pass, not for backward (backward ops land on whichever module
was entered last), so per-component counts come from forward passes, and each shared expert bank's
training cost is counted by running that bank alone, forward and backward, on the inputs it saw.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mmolre_cli.data.shapes import DataShapes
from mmolre_cli.model import multitask_loss
from mmolre_cli.profiling.components import Breakdown, locate, shared_banks, subtree_total
from mmolre_cli.training.batches import Batch

ELEMENTWISE_NOTE = (
    "not counted: element-wise ops (activations, normalisation, softmax, masking, residual adds) "
    "and the optimiser update; FlopCounterMode counts matrix products, convolutions and attention only"
)
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d)
_RECURRENT_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def random_batch(
    shapes: DataShapes,
    modalities: list[str],
    batch: int,
    device: torch.device | str,
    encoders: Mapping[str, nn.Module] | None = None,
) -> Batch:
    """Random features with every frame valid, and random labels for both tasks; a modality whose encoder
    in ``encoders`` runs on raw input gets its ``random_input`` (token ids, or waveforms of about as many
    frames as the data has steps)."""

    def inputs(m: str) -> torch.Tensor:
        encoder = encoders[m] if encoders is not None and m in encoders else None
        if hasattr(encoder, "random_input"):
            return encoder.random_input(batch, shapes.lengths[m], device)
        return torch.randn(batch, shapes.lengths[m], shapes.input_dims[m], device=device)

    features = {m: inputs(m) for m in modalities}
    return Batch(
        features,
        {m: torch.full((batch,), x.shape[1], device=device) for m, x in features.items()},
        torch.rand(batch, device=device) * 6 - 3,
        torch.rand(batch, len(shapes.emotions), device=device) * 3,
    )


def training_pass(model: nn.Module, inputs: Batch) -> None:
    """Forward, the multi-task loss and backward (the optimiser step is element-wise and timed elsewhere)."""
    output = model(inputs.features, inputs.lengths)
    loss, _ = multitask_loss(output, inputs.sentiment, inputs.emotion, model.config, None)
    loss.backward()


def count(step: Callable[[], None]) -> tuple[int, dict[str, int]]:
    """FLOPs of ``step``: the total, and per module path (each including its children's)."""
    with FlopCounterMode(display=False) as counter:
        step()
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        if name != "Global":
            per_module[name.partition(".")[2]] = int(sum(ops.values()))  # drop the root module's class name
    return int(counter.get_total_flops()), per_module


def macs_and_flops(flops: float) -> dict[str, int]:
    """Both units: one multiply-accumulate is two FLOPs."""
    return {"macs": round(flops / 2), "flops": round(flops)}


def count_forward(model: nn.Module, inputs: Batch) -> dict:
    """Executed and active forward FLOPs, split by component; active counts, of each shared bank, the
    experts the routes chose. ``chosen_shares``: per shared bank, the share of its expert weights the routes
    chose (not zero), in eval mode: k/N under top-k, 1 for a router that weighs every expert."""
    model.eval()
    weighted = {path: module for path, module in model.named_modules() if has_own_weights(module)}
    banks = shared_banks(model)
    called: set[str] = set()
    hooks = [
        module.register_forward_pre_hook(lambda module, args, path=path: called.add(path))
        for path, module in weighted.items()
    ]
    try:
        with recorded_calls(banks) as calls:
            # Grad mode stays on: under no_grad the module tracker trips over views of parameters.
            total, per_module = count(lambda: model(inputs.features, inputs.lengths))
    finally:
        for hook in hooks:
            hook.remove()
    breakdown = Breakdown()
    for root in {locate(path)[3] for path in per_module if locate(path)[0] != "other"}:
        breakdown.add(root, subtree_total(per_module, root))
    breakdown.groups["other"] = total - sum(breakdown.groups.values())
    idle = idle_flops(banks, calls, bank_forward_flops)
    missed = {path: weighted[path] for path in sorted(called) if subtree_total(per_module, path) == 0}
    return {
        "batch_size": len(inputs.sentiment),
        "executed": macs_and_flops(total),
        "active": macs_and_flops(total - idle),
        **breakdown.to_dict(),
        "not_counted": not_counted(missed, inputs),
        "chosen_shares": {path: sum(map(chosen_share, args)) / len(args) for path, args in calls.items() if args},
    }


def has_own_weights(module: nn.Module) -> bool:
    """Holds parameters itself and is not a normalisation layer (whose work is element-wise)."""
    return not isinstance(module, _NORMS) and any(True for _ in module.parameters(recurse=False))


def count_training(model: nn.Module, inputs: Batch) -> dict:
    """Executed and active FLOPs of forward + loss + backward; each shared bank's share is counted alone."""
    model.train()
    banks = shared_banks(model)
    with recorded_calls(banks) as calls:
        total, _ = count(lambda: training_pass(model, inputs))
    model.zero_grad(set_to_none=True)
    idle = idle_flops(banks, calls, bank_training_flops)
    return {
        "batch_size": len(inputs.sentiment),
        "executed": macs_and_flops(total),
        "active": macs_and_flops(total - idle),
    }


def chosen_share(args: tuple) -> float:
    """The share of a bank call's (x, mask, weights) expert weights that are not zero."""
    weights = args[2]
    return float((weights != 0).sum()) / weights.numel()


@contextmanager
def recorded_calls(banks: dict[str, nn.Module]) -> Iterator[dict[str, list[tuple]]]:
    """The positional arguments of every call of each bank, by path, while the block runs."""
    calls: dict[str, list[tuple]] = {path: [] for path in banks}
    hooks = [
        bank.register_forward_hook(lambda module, args, output, path=path: calls[path].append(args))
        for path, bank in banks.items()
    ]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def idle_flops(
    banks: dict[str, nn.Module], calls: dict[str, list[tuple]], cost: Callable[[nn.Module, tuple], int]
) -> float:
    """FLOPs spent on experts no route chose: per bank call, what it ran minus the chosen share of what all
    N experts cost (zero for a bank that runs only the chosen experts)."""
    return sum(
        cost(banks[path], args) - chosen_share(args) * cost(banks[path], every_expert(args))
        for path, recorded in calls.items()
        for args in recorded
    )


def every_expert(args: tuple) -> tuple:
    """A bank call's arguments (x, mask, weights) with every expert weighted equally (same gradient needs)."""
    x, mask, weights = args
    return x, mask, torch.full_like(weights, 1.0 / weights.shape[-1]).requires_grad_(weights.requires_grad)


def bank_forward_flops(bank: nn.Module, args: tuple) -> int:
    """Forward FLOPs of one bank call."""
    return count(lambda: bank(*args))[0]


def bank_training_flops(bank: nn.Module, args: tuple) -> int:
    """Forward + backward FLOPs of one bank call, replayed alone with inputs of the same shapes and
    gradient needs: on the meta device (shapes only, no arithmetic), or for real if the bank cannot."""
    try:
        return replay(copy.deepcopy(bank).to("meta"), args, "meta")
    except (NotImplementedError, RuntimeError):  # a data-dependent op has no meta version
        return replay(bank, args, None)


def replay(bank: nn.Module, args: tuple, device: str | None) -> int:
    def leaf(a: torch.Tensor) -> torch.Tensor:
        fresh = torch.empty_like(a, device=device) if device else a.detach()
        return fresh.requires_grad_(a.requires_grad) if a.is_floating_point() else fresh

    def step() -> None:
        out = bank(*(leaf(a) for a in args))
        out.backward(torch.ones_like(out))

    return count(step)[0]


def not_counted(missed: dict[str, nn.Module], inputs: Batch) -> list[str]:
    """What the counter missed, instead of a silent zero: modules that ran with weights but no counted
    FLOPs (with an analytic estimate for recurrent layers), and the ops it never counts."""
    notes = []
    batch = len(inputs.sentiment)
    for path, module in missed.items():
        note = f"{path} ({type(module).__name__}): ran, but the counter saw no FLOPs"
        gates = _RECURRENT_GATES.get(type(module))
        modality = locate(path)[1]
        if gates is not None and modality in inputs.features:
            macs = recurrent_macs(module, gates, batch * inputs.features[modality].shape[1])
            note += f"; analytic estimate {2 * macs:,} FLOPs ({macs:,} MACs) at batch {batch}, not in the totals"
        notes.append(note)
    return [*notes, ELEMENTWISE_NOTE]


def recurrent_macs(module: nn.RNNBase, gates: int, steps: int) -> int:
    """MACs of a recurrent layer over ``steps`` frames: per layer and direction, gates·(input·H + H·H)."""
    directions = 2 if module.bidirectional else 1
    hidden, total, width = module.hidden_size, 0, module.input_size
    for _ in range(module.num_layers):
        total += directions * gates * (width * hidden + hidden * hidden)
        width = directions * hidden
    return total * steps
