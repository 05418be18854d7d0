"""`cnnspec sweep`: an Optuna study over spec paths, architecture included.

space.py turns a trial's draws into a checked spec (through the `--set` machinery), study.py
runs the study (storage, workers, resume, pruning), report.py writes what came of it.
"""
