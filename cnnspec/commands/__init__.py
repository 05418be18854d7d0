"""The command line's commands: one plain function each in its area's module (spec.py, review.py,
run.py, deploy.py), listed once, in workflow order, in app.py. Torch is imported only inside commands."""
