"""Routing analysis: how often each shared expert is chosen, and with what weight, per task, block and modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mmolre_cli.model.routers import Route

RouteKey = tuple[str, int, str]  # (modality, block index from 0, task), as in ModelOutput.routes


class RoutingStats:
    """Sums over utterances of each route's choices (weight > 0) and weights; mergeable across ranks."""

    def __init__(self) -> None:
        self.chosen: dict[RouteKey, torch.Tensor] = {}
        self.weight: dict[RouteKey, torch.Tensor] = {}
        self.count: dict[RouteKey, int] = {}

    def add(self, routes: Mapping[RouteKey, Route]) -> None:
        for key, route in routes.items():
            weights = route.weights.detach().float().cpu()  # b n
            if key not in self.count:
                self.chosen[key] = torch.zeros(weights.shape[-1], dtype=torch.float64)
                self.weight[key] = torch.zeros(weights.shape[-1], dtype=torch.float64)
                self.count[key] = 0
            self.chosen[key] += (weights > 0).sum(0)
            self.weight[key] += weights.sum(0)
            self.count[key] += len(weights)

    def merge(self, other: RoutingStats) -> None:
        for key, count in other.count.items():
            if key not in self.count:
                self.chosen[key] = torch.zeros_like(other.chosen[key])
                self.weight[key] = torch.zeros_like(other.weight[key])
                self.count[key] = 0
            self.chosen[key] += other.chosen[key]
            self.weight[key] += other.weight[key]
            self.count[key] += count

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, list[float]]]]]:
        """``{modality: {block (from 1): {task: {"frequency": [N], "mean_weight": [N]}}}}``.

        ``frequency``: share of utterances whose route gives the expert a non-zero weight (a top-k
        route's frequencies sum to k); ``mean_weight``: the expert's weight averaged over all utterances,
        counting zero where it is not chosen.
        """
        result: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}
        for (modality, block, task), count in sorted(self.count.items()):
            result.setdefault(modality, {}).setdefault(str(block + 1), {})[task] = {
                "frequency": (self.chosen[(modality, block, task)] / count).tolist(),
                "mean_weight": (self.weight[(modality, block, task)] / count).tolist(),
            }
        return result
