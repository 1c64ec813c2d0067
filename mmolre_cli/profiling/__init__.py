"""Cost of an MMoLRE configuration: parameters, FLOPs (executed and active under top-k) and measured speed."""

from mmolre_cli.profiling.compare import compare_grid, parse_compare, ratios, settings_overrides, summary
from mmolre_cli.profiling.plot import expert_scaling, save_plot
from mmolre_cli.profiling.report import profile_configuration, resolve_device

__all__ = [
    "compare_grid",
    "expert_scaling",
    "parse_compare",
    "profile_configuration",
    "ratios",
    "resolve_device",
    "save_plot",
    "settings_overrides",
    "summary",
]
