"""Where a parameter or module belongs: encoders, UniTSE parts per block and modality, fusion, heads."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

#: Component groups; every parameter and every counted FLOP falls in exactly one.
GROUPS = ("encoders", "shared_experts", "specific_experts", "routers", "unitse_norms", "fusion", "heads", "other")
#: UniTSEBlock attribute → its group.
_BLOCK_PARTS = {
    "shared": "shared_experts",
    "specific": "specific_experts",
    "routers": "routers",
    "norms": "unitse_norms",
}


def locate(path: str) -> tuple[str, str | None, int | None, str]:
    """A parameter or module path of MMoLRE → (group, modality, block, the component's own path)."""
    parts = path.split(".")
    if parts[0] in ("encoders", "normalize") and len(parts) > 1:  # input normalisation counts with its encoder
        return "encoders", parts[1], None, ".".join(parts[:2])
    if parts[0] == "unitse" and len(parts) > 4 and parts[2] == "blocks" and parts[4] in _BLOCK_PARTS:
        return _BLOCK_PARTS[parts[4]], parts[1], int(parts[3]), ".".join(parts[:5])
    if parts[0] == "fusion":
        return "fusion", None, None, "fusion"
    if parts[0] == "heads" and len(parts) > 1:
        return "heads", None, None, ".".join(parts[:2])
    return "other", None, None, path


class Breakdown:
    """Counts per group, per encoder modality, and per UniTSE modality and block (blocks numbered from 1)."""

    def __init__(self) -> None:
        self.groups = dict.fromkeys(GROUPS, 0)
        self.encoders: dict[str, int] = {}
        self.unitse: dict[str, dict[int, dict[str, int]]] = {}

    def add(self, path: str, count: int) -> None:
        group, modality, block, _ = locate(path)
        self.groups[group] += count
        if group == "encoders":
            self.encoders[modality] = self.encoders.get(modality, 0) + count
        elif block is not None:
            parts = self.unitse.setdefault(modality, {}).setdefault(block + 1, dict.fromkeys(_BLOCK_PARTS.values(), 0))
            parts[group] += count

    def to_dict(self) -> dict:
        unitse = {
            m: [{"block": b, **parts, "total": sum(parts.values())} for b, parts in sorted(blocks.items())]
            for m, blocks in self.unitse.items()
        }
        return {"by_group": dict(self.groups), "encoders": dict(self.encoders), "unitse": unitse}


def shared_banks(model: nn.Module) -> dict[str, nn.Module]:
    """Each block's shared expert bank, by path."""
    banks = {}
    for path, module in model.named_modules():
        group, _, _, own = locate(path)
        if group == "shared_experts" and own == path:
            banks[path] = module
    return banks


def parameter_report(model: nn.Module, chosen: Mapping[str, float]) -> dict:
    """Total, trainable and active-per-utterance parameters, and their split by component.

    Active counts, of each shared bank, the share ``chosen`` of its experts that routes chose (k of N under
    top-k, see ``count_forward``); everything else (encoders, routers, task-specific experts, norms,
    fusion, heads) is always used.
    """
    breakdown = Breakdown()
    for path, parameter in model.named_parameters():
        breakdown.add(path, parameter.numel())
    total = sum(p.numel() for p in model.parameters())
    idle = sum(
        sum(p.numel() for p in bank.parameters()) * (1.0 - chosen.get(path, 1.0))
        for path, bank in shared_banks(model).items()
    )
    report = {
        "total": total,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "active_per_utterance": round(total - idle),
    }
    return {**report, **breakdown.to_dict()}


def subtree_total(counts: Mapping[str, int], prefix: str) -> int:
    """The count of module ``prefix`` from per-module counts that include their children's; modules
    never called themselves (a ModuleDict) are summed over their topmost called descendants."""
    inside = {path for path in counts if path == prefix or path.startswith(prefix + ".")}

    def covered(path: str) -> bool:
        while len(path) > len(prefix):
            path = path.rpartition(".")[0]
            if path in inside:
                return True
        return False

    return sum(counts[path] for path in inside if not covered(path))
