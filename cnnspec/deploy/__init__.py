"""Stage 5, deployment: export to ONNX, inference and benchmarks with onnxruntime.

The public functions are `cnnspec.export` (`exporter.export_run`) and `cnnspec.predict`
(`predict.predict`). Torch is imported only by the modules that export or benchmark
(exporter, onnx_export, gate, bench); metadata, safety, session, images and predict
need onnxruntime, numpy and Pillow alone.
"""
