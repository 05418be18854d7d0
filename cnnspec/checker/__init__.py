"""Stage 2, Spec → Graph: sugar expanded into a flat node list, shapes, counts, receptive
field, data and memory checks (no torch). The public function is `cnnspec.check`."""
