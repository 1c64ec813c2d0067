"""Low-rank vs dense expert banks: measured speed-up against the FLOP ratio, side by side.

    python benchmarks/lowrank_vs_dense.py [--repeats 20] [--threads N] [--device cpu|cuda]

Defaults: d=768, r=64, N=4 shared experts, 32 rows of length 50. Target: the measured speed-up of
low-rank over dense reaches at least 70 % of the ratio of their counted FLOPs.
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved, machine, print_table
from torch import nn

from mmolre_cli.model.experts import ConvExpertBank
from mmolre_cli.profiling.flops import count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("experts", 4), ("d-model", 768), ("rank", 64), ("batch", 32), ("length", 50)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    banks = {
        "lowrank": ConvExpertBank(args.d_model, args.experts, args.rank, dropout=0.0).to(device),
        "dense": ConvExpertBank(args.d_model, args.experts, args.d_model, dropout=0.0).to(device),
    }
    x = torch.randn(args.batch, args.length, args.d_model, device=device)
    leaf = x.clone().requires_grad_()
    mask = torch.ones(args.batch, args.length, dtype=torch.bool, device=device)
    weights = torch.rand(args.batch, args.experts, device=device).softmax(-1)

    def forward(bank: nn.Module):
        def step() -> None:
            with torch.no_grad():
                bank(x, mask, weights)

        return step

    def train(bank: nn.Module):
        def step() -> None:
            bank.zero_grad(set_to_none=True)
            bank(leaf, mask, weights).square().mean().backward()

        return step

    print(f"machine: {machine(device)}")
    print(f"N={args.experts} d={args.d_model} r={args.rank} rows={args.batch} length={args.length} on {device}")
    header = ["pass", "lowrank ms", "dense ms", "FLOP ratio", "speed-up", "speed-up / FLOP ratio"]
    rows, efficiencies = [], []
    for name, make in (("forward", forward), ("forward+backward", train)):
        flops = {kind: count(make(bank))[0] for kind, bank in banks.items()}
        times = interleaved({kind: make(bank) for kind, bank in banks.items()}, device, args.repeats, args.warmup)
        ratio, speedup = flops["dense"] / flops["lowrank"], times["dense"] / times["lowrank"]
        efficiencies.append(speedup / ratio)
        rows.append([
            name, f"{times['lowrank'] * 1e3:.2f}", f"{times['dense'] * 1e3:.2f}",
            f"{ratio:.2f}x", f"{speedup:.2f}x", f"{100 * speedup / ratio:.0f} %",
        ])  # fmt: skip
    print_table(header, rows)
    print(f"target: speed-up >= 70 % of the FLOP ratio (forward) -> {'met' if efficiencies[0] >= 0.7 else 'MISSED'}")


if __name__ == "__main__":
    main()
