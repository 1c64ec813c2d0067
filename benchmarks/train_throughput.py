"""Training throughput of the default configuration, and the share of the machine's matmul FLOP rate it reaches.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--precision fp32|bf16] [--steps 20] [--scale 0.05]

Trains on MOSEI-shaped synthetic data (aligned, length 50, text/audio/vision) through the trainer's own
step (forward, multi-task loss, backward, clipping, AdamW). FLOPs per step come from
``torch.utils.flop_counter``; the reference rate is a large square ``torch.mm`` timed in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import machine
from torch.utils.flop_counter import FlopCounterMode

from mmolre_cli.config import RunConfig, TrainConfig
from mmolre_cli.data.synthetic import generate_synthetic
from mmolre_cli.model import DataSignature, emotion_pos_weight, multitask_loss
from mmolre_cli.plugins import load_registry
from mmolre_cli.training.batches import TensorSplit
from mmolre_cli.training.evaluate import forward
from mmolre_cli.training.trainer import build_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, size: int, repeats: int = 5) -> float:
    """FLOP/s of a ``size`` × ``size`` fp32 matrix product (median of ``repeats``)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--scale", type=float, default=0.05, help="share of MOSEI's split sizes to generate")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = RunConfig(train=TrainConfig(precision=args.precision))

    data = generate_synthetic("mosei", args.scale, seed=0, seq_len=50)
    signature = DataSignature(data.feature_dims(), list(data.emotions))
    train = TensorSplit.from_split(data.splits["train"], list(signature.input_dims))
    torch.manual_seed(0)
    model = build_model(config, signature, load_registry()).to(device).train()
    pos_weight = emotion_pos_weight(train.emotion).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    batches = [train.batch(index).to(device) for index in train.batch_indices(config.train.batch_size)]
    full = [batch for batch in batches if len(batch.sentiment) == config.train.batch_size]

    def step(batch) -> None:
        output = forward(model, batch, config.train.precision)
        loss, _ = multitask_loss(output, batch.sentiment, batch.emotion, config.model, pos_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(full[0])
    flops = counter.get_total_flops()
    for batch in full[:3]:  # warm-up
        step(batch)
    seconds = []
    for i in range(args.steps):
        synchronize(device)
        started = time.perf_counter()
        step(full[i % len(full)])
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    reference = matmul_rate(device, 4096 if device.type == "cuda" else 2048)

    print(f"machine: {machine(device)}")
    print(f"default config (d={config.model.d_model}, {config.model.experts.shared} shared experts, "
          f"rank {config.model.experts.rank}, top-{config.model.topk}), batch {config.train.batch_size}, "
          f"MOSEI-shaped length 50, {args.precision}")  # fmt: skip
    rate = config.train.batch_size / median
    print(f"training step: {median * 1e3:.1f} ms median of {args.steps}  ->  {rate:.0f} samples/s")
    print(f"FLOPs per step (flop_counter): {flops / 1e9:.2f} GFLOP  ->  {flops / median / 1e9:.1f} GFLOP/s achieved")
    print(f"dense matmul rate (torch.mm): {reference / 1e9:.1f} GFLOP/s")
    print(f"share of the matmul rate: {100 * flops / median / reference:.1f} %")


if __name__ == "__main__":
    main()
