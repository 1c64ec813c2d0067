"""``mmolre ablate`` as a library: ``variants`` plans, ``study.run_ablation`` trains, summarises, plots, tracks.

Output directory: ``results.csv`` (one row per variant and seed), ``results.json`` (the summary),
``heatmap.png`` (a two-key grid) and ``bars.png`` (the other variants beside the reference),
``ablation.json`` (the MLflow parent run, for resuming) and ``runs/`` (every training run).
"""
