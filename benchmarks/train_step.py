"""A full MMoLRE training step at the paper's scale (d=768, text + audio, length 50).

    python benchmarks/train_step.py [--batch 32] [--repeats 5] [--threads N] [--types lowrank,dense]

Runs on the CPU, and on CUDA too when a GPU is present; prints counted FLOPs, median times,
throughput and achieved FLOP/s per expert type and device, and dense/lowrank ratios when both run
(a dense step is about 0.8 TFLOP at batch 32, minutes on a small CPU, so it is opt-in).
"""

from __future__ import annotations

import argparse

import torch
from _common import machine, print_table

from mmolre_cli.config import ExpertConfig, ModelConfig, RunConfig, TrainConfig
from mmolre_cli.data.shapes import like_shapes
from mmolre_cli.plugins import load_registry
from mmolre_cli.profiling import profile_configuration


def paper_config(expert_type: str, batch: int, precision: str) -> RunConfig:
    """MMoLRE as the paper runs it: width 768, text and audio, 4 shared experts of rank 32, top-2."""
    experts = ExpertConfig(shared=4, rank=32, type=expert_type)
    model = ModelConfig(d_model=768, modalities=["text", "audio"], experts=experts, topk=2)
    return RunConfig(model=model, train=TrainConfig(batch_size=batch, precision=precision))


def measure(
    device: torch.device, precision: str, batch: int, repeats: int, warmup: int, types: list[str]
) -> list[dict]:
    """One profile row per expert type on ``device``."""
    registry, shapes = load_registry(), like_shapes("mosei")
    return [
        profile_configuration(
            paper_config(kind, batch, precision), shapes, registry, device=device, repeats=repeats, warmup=warmup
        )
        for kind in types
    ]


def print_rows(device: torch.device, precision: str, rows: list[dict]) -> None:
    batch = rows[0]["flops"]["train_step"]["batch_size"]
    print(f"\n{device} · {precision} · batch {batch} (fwd: forward at that batch; b1: forward latency at batch 1)")
    header = [
        "experts",
        "params",
        "train GFLOP",
        "train ms",
        "utt/s",
        "train TFLOP/s",
        "fwd ms",
        "fwd TFLOP/s",
        "b1 ms",
    ]
    table = []
    for row in rows:
        train, forward = row["timing"]["train_step"], row["timing"]["forward_batch"]
        table.append([
            row["model"]["experts"]["type"], f"{row['parameters']['total'] / 1e6:.1f} M",
            f"{row['flops']['train_step']['executed']['flops'] / 1e9:.1f}", f"{train['median_ms']:.1f}",
            f"{train['throughput_per_s']:.0f}", f"{train['achieved_flops_per_s'] / 1e12:.3f}",
            f"{forward['median_ms']:.1f}", f"{forward['achieved_flops_per_s'] / 1e12:.3f}",
            f"{row['timing']['forward']['median_ms']:.1f}",
        ])  # fmt: skip
    by_type = {row["model"]["experts"]["type"]: row for row in rows}
    if {"lowrank", "dense"} <= by_type.keys():
        table.append(ratio_row(by_type["lowrank"], by_type["dense"]))
    print_table(header, table)


def ratio_row(low: dict, dense: dict) -> list[str]:
    """Dense over low-rank: parameters, training-step FLOPs and median training-step time."""
    flop_ratio = dense["flops"]["train_step"]["executed"]["flops"] / low["flops"]["train_step"]["executed"]["flops"]
    time_ratio = dense["timing"]["train_step"]["median_ms"] / low["timing"]["train_step"]["median_ms"]
    return ["dense/lowrank", f"{dense['parameters']['total'] / low['parameters']['total']:.2f}x",
            f"{flop_ratio:.2f}x", f"{time_ratio:.2f}x", "", "", "", "", ""]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--types", default="lowrank", help="expert types, comma-separated: lowrank,dense")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"machine: {machine(devices[-1])}")
    print("MMoLRE d=768, text 768 + audio 74, length 50, 4 shared experts (rank 32 or dense), top-2, 2 blocks")
    for device in devices:
        rows = measure(device, "fp32", args.batch, args.repeats, args.warmup, args.types.split(","))
        print_rows(device, "fp32", rows)


if __name__ == "__main__":
    main()
