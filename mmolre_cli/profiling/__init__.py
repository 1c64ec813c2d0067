"""Cost of an MMoLRE configuration: parameters, FLOPs (executed and active under top-k) and measured speed."""

from mmolre_cli.profiling.compare import compare_grid, parse_compare, ratios, settings_overrides, summary
from mmolre_cli.profiling.plot import check_plot_path, expert_scaling, save_plot
from mmolre_cli.profiling.report import profile_configuration, resolve_device

__all__ = [
    "check_plot_path",
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
