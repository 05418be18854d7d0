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
  .cnnspec.lock      held (flock) by the process that writes the run: one writer at a time

paths.py   RunPaths (where each file is), LOCK_NAME, is_run
info.py    RunInfo (run.json): built by `RunInfo.for_spec`, written by `write_info`, read by `read_info`; the hashes
lock.py    RunLock, `locked`: one writer per run directory
files.py   `writing`, `write_file`: atomic writes whose failure is a CheckpointError
weights.py the weight files (safetensors with a content hash) and the training state file (last.state.pt)
reader.py  open_run, load_trained, ensure_architecture: a run read back and checked against its spec
untrained.py  init_run: an untrained run directory in the same layout
"""
