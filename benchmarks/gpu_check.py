"""GPU check: ``profile`` at the paper's scale on CUDA in fp32 and bf16, with achieved TFLOP/s, and the
fine-tuned path (RoBERTa-base and Data2Vec-audio-base inside MMoLRE) against the frozen-feature path.

    python benchmarks/gpu_check.py [--batch 64] [--repeats 20] [--raw-batch 8] [--raw-seconds 4]

Prints, per precision and expert type, the forward (at the batch size) and training-step times
and the FLOP/s they achieve (FLOPs counted by FlopCounterMode, fp32 and bf16 alike); then, per
precision and with and without gradient checkpointing, the training-step time of the fine-tuned
path, its ratio to the frozen-feature path, and the peak GPU memory of each (benchmarks/raw_encoders.py).
Without a CUDA device it says so and exits with status 1, running nothing.
"""

from __future__ import annotations

import argparse
import sys

import torch
from _common import machine, print_table
from raw_encoders import measure as measure_raw
from train_step import measure, print_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--raw-batch", type=int, default=8, help="clips per fine-tuning step")
    parser.add_argument("--raw-seconds", type=float, default=4.0, help="audio per clip in the fine-tuning step")
    parser.add_argument("--raw-repeats", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device on this machine")
    device = torch.device("cuda")
    print(f"machine: {machine(device)}")
    for precision in ("fp32", "bf16"):
        rows = measure(device, precision, args.batch, args.repeats, args.warmup, ["lowrank", "dense"])
        print_rows(device, precision, rows)
    fine_tuned(device, args.raw_batch, args.raw_seconds, args.raw_repeats)


def fine_tuned(device: torch.device, batch: int, seconds: float, repeats: int) -> None:
    """Training step of the fine-tuned path at base size against the frozen-feature path, with peak memory."""
    print(f"\nfine-tuned hf_text + hf_audio (base size, random weights) vs frozen features · batch {batch}, "
          f"text 50 tokens, audio {seconds:g} s")  # fmt: skip
    rows = []
    for precision in ("fp32", "bf16"):
        for checkpointing in (False, True):
            torch.cuda.reset_peak_memory_stats(device)
            result = measure_raw(
                "base", device, batch=batch, seconds=seconds, repeats=repeats, warmup=2,
                precision=precision, checkpointing=checkpointing,
            )  # fmt: skip
            tuned, frozen = result["seconds"]["fine-tuned"], result["seconds"]["frozen"]
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            rows.append([precision, "yes" if checkpointing else "no", f"{tuned * 1e3:.1f}", f"{frozen * 1e3:.1f}",
                         f"{tuned / frozen:.1f}x", f"{batch / tuned:.1f}", f"{peak:.1f}"])  # fmt: skip
    header = ["precision", "checkpointing", "fine-tuned ms", "frozen ms", "ratio", "clips/s", "peak GiB (both)"]
    print_table(header, rows)


if __name__ == "__main__":
    main()
