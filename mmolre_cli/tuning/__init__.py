"""``mmolre tune`` as a library: ``space`` reads the search space, ``trial`` trains one trial (in any
process), ``study`` runs the study with Optuna and retrains the best configuration, ``report`` writes
``trials.csv`` and the plots.

Output directory: ``optuna.db`` (the study, unless ``--storage`` names another), ``trials/trial-<n>/``
(one training run per trial, validation split only), ``best.yaml``, ``final-trial-<n>/`` (the best
configuration retrained over the final seeds, then tested), ``trials.csv``, ``history.png``,
``importances.png`` and ``tune.json`` (the summary).
"""
