"""The run directory: the contract between train, evaluate, export and predict, owned by this package.

RUN/
  spec.yaml          the resolved spec that was trained (overrides applied)
  run.json           RunInfo: hashes, class names, input shape, normalisation, device
  metrics.jsonl      one object per epoch
  checkpoints/       last.safetensors, best.safetensors (model weights),
                     last.state.pt (training state, torch.load(weights_only=True))
  result.json        test_accuracy, test_loss, best_epoch, epochs, wall_seconds, device, amp
  curves.png
  model.onnx         after export
  .cnnspec.lock      held (flock) by the process that writes the run (exclusive) or reads its weights (shared)

Inside a run cnnspec writes only its own files: a symlink or special file at one of its names is
refused, never written through (files.py).

paths.py   RunPaths (where each file is, `owned`: every name cnnspec writes), LOCK_NAME
info.py    RunInfo (run.json): built by `RunInfo.for_spec`, written by `write_info`, read by `read_info`;
           the hashes; is_run
lock.py    RunLock, `locked`: one writer per run directory, and no reader while it writes
files.py   `write_run_file`, `make_run_folder`, `ensure_own_files`: the run's own files, written atomically;
           `writing`, `write_file`: a failed write is a CheckpointError
weights.py the weight files (safetensors with a content hash) and the training state file (last.state.pt)
reader.py  open_run, load_trained, ensure_architecture: a run read back and checked against its spec
untrained.py  init_run: an untrained run directory in the same layout
"""
