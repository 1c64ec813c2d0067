"""GPU check: ``profile`` at the paper's scale on CUDA in fp32 and bf16, with achieved TFLOP/s.

    python benchmarks/gpu_check.py [--batch 64] [--repeats 20]

Prints, per precision and expert type, the forward (at the batch size) and training-step times
and the FLOP/s they achieve (FLOPs counted by FlopCounterMode, fp32 and bf16 alike).
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import machine
from train_step import measure, print_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device on this machine")
    device = torch.device("cuda")
    print(f"machine: {machine(device)}")
    for precision in ("fp32", "bf16"):
        rows = measure(device, precision, args.batch, args.repeats, args.warmup, ["lowrank", "dense"])
        print_rows(device, precision, rows)


if __name__ == "__main__":
    main()
