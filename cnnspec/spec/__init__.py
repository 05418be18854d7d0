"""Stage 1, YAML → Spec: reading with positions, the pydantic models, `--set` overrides, the
JSON Schema (no torch). The public functions are `cnnspec.load` and `cnnspec.loads`."""
