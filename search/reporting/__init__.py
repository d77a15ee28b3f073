"""Reports of finished sweeps, read from MLflow: tables with intervals, the optimism gap, figures and Optuna plots
(the command is ``python -m search.report``)."""
