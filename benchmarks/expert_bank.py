"""Batched shared-expert bank vs a plain loop over separate experts: same weights, same output.

    python benchmarks/expert_bank.py [--repeats 30] [--threads N]

Defaults: N=8 experts, d=256, r=32, batch 32, length 50, CPU. Target: the bank ≥3× faster (forward).
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved, machine, print_table
from torch import Tensor, nn

from mmolre_cli.model.experts import ConvExpertBank


class ExpertLoop(nn.Module):
    """The bank's experts as N separate Conv1d pairs, mixed in a Python loop."""

    def __init__(self, bank: ConvExpertBank):
        super().__init__()
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
        mixed = sum(weights[:, n, None, None] * expert(channels_first) for n, expert in enumerate(self.experts))
        return mixed.transpose(1, 2) * valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("experts", 8), ("d-model", 256), ("rank", 32), ("batch", 32), ("length", 50)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(0)
    bank = ConvExpertBank(args.d_model, args.experts, args.rank, dropout=0.0)
    loop = ExpertLoop(bank)
    x = torch.randn(args.batch, args.length, args.d_model)
    mask = torch.arange(args.length)[None, :] < torch.randint(args.length // 2, args.length + 1, (args.batch, 1))
    weights = torch.rand(args.batch, args.experts).softmax(-1)
    torch.testing.assert_close(bank(x, mask, weights), loop(x, mask, weights), rtol=1e-4, atol=1e-5)

    def forward(module: nn.Module):
        def step() -> None:
            with torch.no_grad():
                module(x, mask, weights)

        return step

    def train(module: nn.Module):
        leaf = x.clone().requires_grad_()

        def step() -> None:
            module.zero_grad(set_to_none=True)
            module(leaf, mask, weights).square().mean().backward()

        return step

    print(f"machine: {machine(device)}")
    print(f"N={args.experts} d={args.d_model} r={args.rank} batch={args.batch} length={args.length}; outputs equal")
    rows = []
    for name, make in (("forward", forward), ("forward+backward", train)):
        times = interleaved({"bank": make(bank), "loop": make(loop)}, device, args.repeats, args.warmup)
        speedup = times["loop"] / times["bank"]
        rows.append([name, f"{times['bank'] * 1e3:.2f}", f"{times['loop'] * 1e3:.2f}", f"{speedup:.2f}x"])
    print_table(["pass", "bank ms (median)", "loop ms (median)", "bank speed-up"], rows)
    print(f"target: forward speed-up >= 3x -> {'met' if float(rows[0][3][:-1]) >= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
