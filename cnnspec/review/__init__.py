"""Reviewing architecture changes: canonical formatting (`fmt`), architecture diffs (`diff`),
and starting specs from templates (`init`). Nothing here imports torch."""
