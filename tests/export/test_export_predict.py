"""predict: PNG/JPEG files and folders through the embedded preprocessing, onnxruntime vs torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from cnnspec.deploy.exporter import ExportReport
from cnnspec.deploy.images import load_image
from cnnspec.deploy.predict import predict
from cnnspec.deploy.session import CPU, CUDA, cuda_device_present
from cnnspec.training.augment import BatchAugment
from cnnspec.training.sources import _FolderImages
from tests.cli_helpers import run_cli
from tests.export._export_helpers import torch_logits, write_image


def predict_json(*args: str) -> dict:
    result = run_cli("predict", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_predict_on_a_png_gives_the_torch_models_top1(digits_export: ExportReport, tmp_path: Path) -> None:
    png = write_image(tmp_path / "digit.png", (8, 8), "L", seed=1)
    report = predict_json(str(digits_export.path), str(png), "--top-k", "3")
    # torch on the same image, preprocessed by hand: 0–1 pixels, 1×8×8, no normalisation for this run.
    x = np.asarray(Image.open(png), dtype=np.float32)[None, None] / 255.0
    want = torch_logits(digits_export.path.parent, x)[0]
    top = report["predictions"][0]["top"]
    assert report["predictions"][0]["file"] == str(png)
    assert top[0]["index"] == int(want.argmax()) and top[0]["class"] == str(int(want.argmax()))
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    assert top[0]["logit"] == pytest.approx(float(want.max()), abs=1e-4)
    assert report["provider"] in (CPU, CUDA)


def test_predict_rgb_model_on_jpeg_and_grey_png(small_cnn_export: ExportReport, tmp_path: Path) -> None:
    jpg = write_image(tmp_path / "a.jpg", (32, 32), "RGB", seed=2)
    grey = write_image(tmp_path / "b.png", (32, 32), "L", seed=3)  # grey files are converted to RGB
    report = predict_json(str(small_cnn_export.path), str(jpg), str(grey), "-k", "1")
    for entry, path in zip(report["predictions"], (jpg, grey), strict=True):
        x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
        want = torch_logits(small_cnn_export.path.parent, x)[0]
        assert entry["top"][0]["index"] == int(want.argmax())
        assert entry["top"][0]["class"] == small_cnn_export.metadata.class_names[int(want.argmax())]


def test_predict_resizes_and_normalises_as_training_did(resized_export: ExportReport, tmp_path: Path) -> None:
    png = write_image(tmp_path / "big.png", (40, 30), "RGB", seed=4)
    result = predict(resized_export.path, [png], top_k=5)
    # Training's own path for this file: the image-folder decoder, then evaluation's normalisation.
    decoded, _ = _FolderImages([(str(png), 0)], channels=3, size=(16, 16))[0]
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    evaluation = BatchAugment([], channels=3, mean=mean, std=std, num_classes=5, device=torch.device("cpu"))
    x = evaluation.normalize(decoded[None]).numpy()
    assert np.abs(load_image(png, resized_export.metadata) - x[0]).max() <= 1e-6  # predict's input is training's
    want = torch_logits(resized_export.path.parent, x)[0]
    got = [s.logit for s in sorted(result.predictions[0].top, key=lambda s: s.index)]
    assert np.abs(np.array(got) - want).max() <= 1e-4
    assert result.predictions[0].best.name == "abcde"[int(want.argmax())]
    assert sum(s.probability for s in result.predictions[0].top) == pytest.approx(1.0)


def test_predict_a_folder_reads_its_images_in_order(digits_export: ExportReport, tmp_path: Path) -> None:
    for name in ("b.png", "a.png", "c.jpeg"):
        write_image(tmp_path / name, (8, 8), "L", seed=len(name) + ord(name[0]))
    (tmp_path / "notes.txt").write_text("not an image")
    result = predict(digits_export.path, [tmp_path], top_k=99)
    assert [Path(p.file).name for p in result.predictions] == ["a.png", "b.png", "c.jpeg"]
    assert all(len(p.top) == 10 for p in result.predictions)  # top-k capped at the class count


def test_predict_text_output_names_the_provider(digits_export: ExportReport, tmp_path: Path) -> None:
    png = write_image(tmp_path / "x.png", (8, 8), "L", seed=5)
    result = run_cli("predict", str(digits_export.path), str(png), "-k", "2")
    assert result.exit_code == 0, result.output
    assert "onnxruntime provider: " in result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"{png}: ") and line.count("(") == 2


def test_predict_falls_back_to_the_cpu_provider_without_a_gpu(digits_export: ExportReport, tmp_path: Path) -> None:
    # onnxruntime-gpu lists CUDAExecutionProvider here although no GPU exists: it must not be used.
    if cuda_device_present():
        pytest.skip("a CUDA device is visible on this machine")
    png = write_image(tmp_path / "x.png", (8, 8), "L", seed=6)
    assert predict(digits_export.path, [png]).provider == CPU
    result = run_cli("predict", str(digits_export.path), str(png), "--device", "cuda")
    assert result.exit_code == 1 and result.stdout == ""
    # onnxruntime really made a CPU-only session when asked for CUDA here: the one error line says so.
    assert result.stderr.startswith(
        f"{digits_export.path}: error: CUDAExecutionProvider was requested but onnxruntime fell back to"
        " CPUExecutionProvider (no CUDA device is visible)"
    ), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.gpu
def test_predict_uses_the_cuda_provider_on_a_gpu(digits_export: ExportReport, tmp_path: Path) -> None:
    png = write_image(tmp_path / "x.png", (8, 8), "L", seed=7)
    result = predict(digits_export.path, [png], device="cuda")
    assert result.provider == CUDA


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: write_image(d / "big.png", (9, 8), "L", seed=0), "trained without resizing"),
        (lambda d: (d / "bad.png").write_bytes(b"not a png") and d / "bad.png", "not an image Pillow can decode"),
        (lambda d: d / "missing.png", "no such file or folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no images"),
    ],
)
def test_predict_bad_input_exits_1_with_a_message(
    digits_export: ExportReport, tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    result = run_cli("predict", str(digits_export.path), str(make(tmp_path)))
    assert result.exit_code == 1
    assert message in result.stderr


def test_predict_refuses_an_onnx_file_without_cnnspec_metadata(digits_export: ExportReport, tmp_path: Path) -> None:
    model = onnx.load(str(digits_export.path))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    png = write_image(tmp_path / "x.png", (8, 8), "L", seed=8)
    result = run_cli("predict", str(bare), str(png))
    assert result.exit_code == 1 and "no cnnspec metadata" in result.stderr


def test_predict_does_not_import_torch(digits_export: ExportReport, tmp_path: Path) -> None:
    png = write_image(tmp_path / "x.png", (8, 8), "L", seed=9)
    code = (
        "import sys\n"
        "from cnnspec.deploy.predict import predict\n"
        f"r = predict({str(digits_export.path)!r}, [{str(png)!r}])\n"
        "assert len(r.predictions) == 1\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_trained_digits_run_exports_and_predicts_its_samples(tmp_path: Path) -> None:
    """The README's main job, shortened: train digits, export, predict RUN/samples."""
    run = tmp_path / "digits"
    spec = Path(__file__).parents[2] / "specs" / "digits.yaml"
    trained = run_cli("train", str(spec), "--out", str(run), "--set", "train.epochs=3", "-q")
    assert trained.exit_code == 0, trained.output
    assert run_cli("export", str(run)).exit_code == 0
    report = predict_json(str(run / "model.onnx"), str(run / "samples"), "-k", "1")
    files = [Path(p["file"]) for p in report["predictions"]]
    assert files, "the trainer wrote no samples"
    info = json.loads((run / "run.json").read_text())
    mean, std = np.array(info["mean"])[:, None, None], np.array(info["std"])[:, None, None]
    x = np.stack([(np.asarray(Image.open(f), dtype=np.float32)[None] / 255.0 - mean) / std for f in files])
    want = torch_logits(run, x.astype(np.float32)).argmax(1)
    got = [p["top"][0]["index"] for p in report["predictions"]]
    assert got == want.tolist()  # onnxruntime + embedded preprocessing == torch on the same pixels
    correct = sum(
        f.name.split("_")[0] == p["top"][0]["class"] for f, p in zip(files, report["predictions"], strict=True)
    )
    # A 3-epoch digits model labels its samples (names are CLASS_idxN.png): 24 seeds (0-23): 7-8 of the 8
    # on this machine (2-core x86 CPU, one thread), test accuracy 0.928-0.978.
    assert correct >= len(files) - 3


def _labelled_folder(root: Path, counts: dict[str, int]) -> list[tuple[Path, str]]:
    """ROOT/CLASS/N.png: random 8×8 grey images, `counts[CLASS]` of each class."""
    files = []
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        files += [
            (write_image(root / name / f"{i}.png", (8, 8), "L", seed=100 * int(name) + i), name) for i in range(n)
        ]
    return files


def test_predict_on_a_labelled_folder_reports_accuracy_and_confusion_matrix(
    digits_export: ExportReport, tmp_path: Path
) -> None:
    files = _labelled_folder(tmp_path / "test", {"0": 3, "3": 4, "7": 5})
    report = predict_json(str(digits_export.path), str(tmp_path / "test"), "-k", "1")
    # Each file on its own (no folder, no label): the class the model gives it.
    alone = predict_json(str(digits_export.path), *(str(f) for f, _ in files), "-k", "1")
    said = [int(p["top"][0]["class"]) for p in alone["predictions"]]
    assert [(p["file"], p["label"]) for p in report["predictions"]] == [(str(f), c) for f, c in files]
    expected = np.zeros((10, 10), dtype=int)
    for (_, label), predicted in zip(files, said, strict=True):
        expected[int(label), predicted] += 1
    evaluation = report["evaluation"]
    assert evaluation["classes"] == [str(i) for i in range(10)]
    assert evaluation["confusion_matrix"] == expected.tolist()
    assert evaluation["images"] == 12
    assert evaluation["accuracy"] == pytest.approx(np.trace(expected) / 12)
    assert set(evaluation) >= {"top5_accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class"}
    assert [evaluation["per_class"][c]["images"] for c in ("0", "3", "7", "1")] == [3, 4, 5, 0]


def test_predict_text_on_a_labelled_folder_shows_accuracy_and_the_matrix(
    digits_export: ExportReport, tmp_path: Path
) -> None:
    _labelled_folder(tmp_path / "test", {"2": 2, "5": 3})
    result = run_cli("predict", str(digits_export.path), str(tmp_path / "test"), env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    report = predict_json(str(digits_export.path), str(tmp_path / "test"))["evaluation"]
    assert f"accuracy {report['accuracy']:.4f}, top-5 {report['top5_accuracy']:.4f}" in result.stdout
    assert "on 5 labelled images" in result.stdout
    lines = result.stdout.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted)")
    rows = [line.replace("│", " ").split() for line in lines[start:] if line.startswith("│")]
    assert rows == [[str(c), *map(str, report["confusion_matrix"][c])] for c in range(10)]


def test_predict_refuses_a_class_folder_the_model_does_not_know(digits_export: ExportReport, tmp_path: Path) -> None:
    _labelled_folder(tmp_path / "test", {"1": 1})
    (tmp_path / "test" / "cat").mkdir()
    write_image(tmp_path / "test" / "cat" / "a.png", (8, 8), "L", seed=3)
    result = run_cli("predict", str(digits_export.path), str(tmp_path / "test"))
    assert result.exit_code == 1
    assert f"{tmp_path / 'test' / 'cat'} is not a class of the model: its folder name 'cat'" in result.stderr


def test_a_model_whose_outputs_are_not_finite_is_refused_never_ranked(
    digits_export: ExportReport, tmp_path: Path
) -> None:
    # The exported digits model with its logits multiplied by NaN: what a diverged or damaged model gives.
    model = onnx.load(str(digits_export.path))
    out = model.graph.output[0].name
    model.graph.node[-1].output[list(model.graph.node[-1].output).index(out)] = "raw_logits"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan"))
    model.graph.node.append(onnx.helper.make_node("Mul", ["raw_logits", "nan"], [out]))
    path = tmp_path / "nan.onnx"
    onnx.save(model, str(path))
    png = write_image(tmp_path / "a.png", (8, 8), "L", seed=1)
    result = run_cli("predict", str(path), str(png), "--format", "json")
    assert result.exit_code == 1
    assert f"the model's outputs are not finite (NaN or inf) for {png}" in result.stderr
    assert result.stdout == ""
