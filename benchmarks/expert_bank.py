"""Batched shared-expert bank vs per-expert loops: same weights, same output, side by side.

    python benchmarks/expert_bank.py [--repeats 30] [--threads N] [--topk K]

Defaults: N=8 experts, d=256, r=32, batch 32, length 50, CPU; two routings of the same bank:
``soft`` (every expert weighted, as the soft router does) and ``top-K`` (K=2 of N per utterance, as
the default top-k router does). Two loops: ``loop`` runs every expert on the whole batch and weights
it (a plain per-expert loop); ``dispatch loop`` runs each expert only on the utterances routed to it.
Target: the bank's forward ≥3× faster than the plain loop.
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved, machine, print_table
from torch import Tensor, nn

from mmolre_cli.model.experts import ConvExpertBank


class ExpertLoop(nn.Module):
    """The bank's experts as N separate Conv1d pairs, mixed in a Python loop.

    ``dispatch``: each expert runs only on the utterances with a non-zero weight for it."""

    def __init__(self, bank: ConvExpertBank, dispatch: bool = False):
        super().__init__()
        self.dispatch = dispatch
        d, hidden = bank.down_weight.shape[2], bank.hidden
        self.experts = nn.ModuleList()
        for n in range(bank.n_experts):
            up, down = nn.Conv1d(d, hidden, 3, padding=1), nn.Conv1d(hidden, d, 1)
            rows = slice(n * hidden, (n + 1) * hidden)
            up.weight.data, up.bias.data = bank.up.weight.data[rows].clone(), bank.up.bias.data[rows].clone()
            down.weight.data = bank.down_weight.data[n].T[:, :, None].clone()
            down.bias.data = bank.down_bias.data[n].clone()
            self.experts.append(nn.Sequential(up, nn.GELU(), nn.Dropout(bank.dropout.p), down))

    def forward(self, x: Tensor, mask: Tensor, weights: Tensor) -> Tensor:
        valid = mask[..., None].to(x.dtype)
        channels_first = (x * valid).transpose(1, 2)
        if not self.dispatch:
            mixed = sum(weights[:, n, None, None] * expert(channels_first) for n, expert in enumerate(self.experts))
            return mixed.transpose(1, 2) * valid
        mixed = torch.zeros_like(channels_first)
        for n, expert in enumerate(self.experts):
            rows = weights[:, n].nonzero().squeeze(1)
            if len(rows):
                mixed = mixed.index_add(0, rows, weights[rows, n, None, None] * expert(channels_first[rows]))
        return mixed.transpose(1, 2) * valid


def top_k_weights(logits: Tensor, k: int) -> Tensor:
    """Softmax over each row's k largest logits, zero elsewhere (the top-k router's weights)."""
    kept, chosen = logits.topk(k, dim=-1)
    return torch.zeros_like(logits).scatter(-1, chosen, kept.softmax(-1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("experts", 8), ("d-model", 256), ("rank", 32), ("batch", 32), ("length", 50)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--topk", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    bank = ConvExpertBank(args.d_model, args.experts, args.rank, dropout=0.0)
    loops = {"loop": ExpertLoop(bank), "dispatch loop": ExpertLoop(bank, dispatch=True)}
    x = torch.randn(args.batch, args.length, args.d_model)
    mask = torch.arange(args.length)[None, :] < torch.randint(args.length // 2, args.length + 1, (args.batch, 1))
    logits = torch.randn(args.batch, args.experts)
    routings = {"soft": logits.softmax(-1), f"top-{args.topk}": top_k_weights(logits, args.topk)}
    for weights in routings.values():
        for loop in loops.values():
            torch.testing.assert_close(bank(x, mask, weights), loop(x, mask, weights), rtol=1e-4, atol=1e-5)

    def forward(module: nn.Module, weights: Tensor):
        def step() -> None:
            with torch.no_grad():
                module(x, mask, weights)

        return step

    def train(module: nn.Module, weights: Tensor):
        leaf = x.clone().requires_grad_()

        def step() -> None:
            module.zero_grad(set_to_none=True)
            module(leaf, mask, weights).square().mean().backward()

        return step

    print(f"machine: {machine(device)}")
    print(f"N={args.experts} d={args.d_model} r={args.rank} batch={args.batch} length={args.length}; outputs equal")
    header = ["routing", "pass", "bank ms", "loop ms", "dispatch loop ms", "vs loop", "vs dispatch loop"]
    rows, forward_speedups = [], {}
    for routing, weights in routings.items():
        for name, make in (("forward", forward), ("forward+backward", train)):
            modules = {"bank": bank, **loops}
            times = interleaved({k: make(m, weights) for k, m in modules.items()}, device, args.repeats, args.warmup)
            speedups = [times[k] / times["bank"] for k in loops]
            if name == "forward":
                forward_speedups[routing] = speedups[0]
            rows.append([routing, name, *(f"{times[k] * 1e3:.2f}" for k in modules), *(f"{s:.2f}x" for s in speedups)])
    print_table(header, rows)
    for routing, speedup in forward_speedups.items():
        print(f"target ({routing}): forward speed-up over the loop >= 3x -> {'met' if speedup >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
