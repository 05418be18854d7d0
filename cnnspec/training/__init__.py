"""Stage 4, training: data, batched augmentation, the loop, checkpoints and resume (imports torch).

The public functions are `cnnspec.train` and `cnnspec.evaluate_run` (`api.py`).
"""
