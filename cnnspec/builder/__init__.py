"""Stage 3, Graph → torch.nn.Module: `graph_module.build` and `SpecModule` (imports torch).

The public function is `cnnspec.build`; this package holds its parts.
"""
