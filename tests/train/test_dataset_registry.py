"""A dataset is one registered class (cnnspec.datasets): its name, native shape, title and loader
come from it alone, for the schema, `validate` and training (issue 13: adding one took three edits)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cnnspec.datasets import DATASETS, Dataset, register

# A process that registers a dataset before cnnspec reads a spec, as an edit of cnnspec/datasets.py would.
SCRIPT = textwrap.dedent(
    """
    import json, torch
    from cnnspec.datasets import Dataset, register

    @register
    class Stripes(Dataset):
        name = "stripes"
        title = "Stripes"
        description = "horizontal or vertical stripes"
        shape = (1, 4, 4)
        images = 30

        @classmethod
        def arrays(cls, spec, data):
            rows = torch.zeros(1, 4, 4, dtype=torch.uint8)
            rows[:, ::2] = 255
            images = torch.stack([rows if i % 2 else rows.transpose(1, 2) for i in range(30)])
            labels = torch.arange(30) % 2
            return (images[:20], labels[:20]), (images[20:], labels[20:]), ["vertical", "horizontal"]

    import cnnspec
    from cnnspec.spec.schema import json_schema
    from cnnspec.training.datasets import load_data

    def spec(size):
        return cnnspec.loads(
            "name: s\\nmodel:\\n  input: {channels: 1, height: %d, width: %d}\\n"
            "  layers: [flatten, linear: {out_features: 2}]\\n"
            "data: {dataset: {name: stripes}, val_split: 0.25, batch_size: 4}\\n"
            "train: {epochs: 1, device: cpu}\\n" % (size, size),
            "s.yaml",
        )

    out = {"enum": json_schema()["$defs"]["DatasetSpec"]["properties"]["name"]["enum"]}
    out["description"] = json_schema()["$defs"]["DatasetSpec"]["properties"]["name"]["description"]
    try:
        cnnspec.check(spec(5))
    except cnnspec.DataError as exc:
        out["refused"] = [(d.message, d.notes) for d in exc.diagnostics]
    bundle = load_data(spec(4))
    out["loaded"] = [len(bundle.train), len(bundle.val), len(bundle.test), bundle.class_names]
    print("RESULT " + json.dumps(out))
    """
)


def test_a_dataset_registered_as_one_class_is_named_checked_and_loaded_from_it() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["enum"][-1] == "stripes" and out["enum"][:-1] == list(DATASETS)
    assert out["description"].endswith("; stripes (horizontal or vertical stripes).")
    # validate's shape check knows its native 1×4×4 without loading it
    assert out["refused"] == [
        ["the data pipeline gives 4×4 images but model.input is 5×5", ["Stripes is 1×4×4"]],
    ]
    # its loader's 20 training images: 5 held out for validation (val_split 0.25); its 10 test images
    assert out["loaded"] == [15, 5, 10, ["vertical", "horizontal"]]


def test_a_dataset_name_that_is_taken_is_refused() -> None:
    class Again(Dataset):
        name = "digits"

    with pytest.raises(TypeError, match="dataset 'digits' is Digits already"):
        register(Again)
    assert DATASETS["digits"].__name__ == "Digits"
