"""Reviewing architecture changes: canonical formatting (`fmt`), architecture diffs (`diff`, rendered
by cnnspec.render.diff), and starting specs from templates (`init`). Nothing here imports torch."""
