"""Refuse a training run that cannot fit the device before anything is allocated or written.

The estimate (cnnspec.checker.memory) is fp32 weights, their gradients and the optimizer's
state, a batch's forward/backward pass, its augmentation's largest step (random_crop's padded
batch), and the dataset held in memory; it is compared
with what the device has free: on a CPU the kernel's MemAvailable (/proc/meminfo), capped by
the cgroup's memory.max when the process runs in one; on CUDA `torch.cuda.mem_get_info`. The
estimate leaves out kernels' workspaces and allocator slack, so it errs low: a run it lets
through may still run out of memory, one it refuses could not have run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cnnspec.checker.graph import Graph
from cnnspec.checker.memory import BYTES_FP32, MemoryEstimate, available_cpu_memory, estimate, format_bytes
from cnnspec.errors import DataError, Diagnostic, Location
from cnnspec.spec.model import Spec


def available_memory(device: torch.device) -> int | None:
    """Free bytes on `device` (CPU or CUDA); None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        return available_cpu_memory()
    return None


@dataclass(frozen=True)
class _Part:
    what: str
    bytes: int
    location: Location | None


def optimizer_slots(spec: Spec) -> int:
    """fp32 tensors the optimizer keeps per trainable parameter (momentum, Adam's two averages)."""
    opt = spec.optimizer
    if opt.name in ("adam", "adamw"):
        return 2
    return 1 if opt.momentum > 0 else 0


def training_parts(spec: Spec, graph: Graph, device: torch.device, est: MemoryEstimate | None = None) -> list[_Part]:
    """What training needs on `device`, part by part (the dataset counts where it is held)."""
    est = est or estimate(graph)
    assert spec.data is not None
    batch = spec.data.batch_size
    slots = optimizer_slots(spec)
    heavy, big = est.heaviest_weights, est.heaviest_output
    state = graph.trainable_params * BYTES_FP32 * (1 + slots)
    parts = [
        _Part(f"weights ({graph.total_params:,} params)", est.weights, heavy.location if heavy else None),
        _Part(
            f"gradients{f' and {spec.optimizer.name} state ({slots} per parameter)' if slots else ''}",
            state,
            heavy.location if heavy else None,
        ),
        _Part(
            f"activations: {format_bytes(est.forward_backward)} per image (forward and backward) × batch {batch}",
            est.forward_backward * batch,
            big.location if big else None,
        ),
    ]
    if est.augment.bytes:  # the augmented batch, on the training device
        parts.append(
            _Part(
                f"augmentation: {format_bytes(est.augment.bytes)} per image ({est.augment.what}) × batch {batch}",
                est.augment.bytes * batch,
                spec.source.locate(est.augment.path),
            )
        )
    # In-memory datasets are built on the CPU and moved to the training device once.
    if est.data.bytes:
        parts.append(_Part(f"the dataset ({est.data.what})", est.data.bytes, spec.source.locate(est.data.path)))
    return parts


def ensure_fits(spec: Spec, graph: Graph, device: torch.device) -> None:
    """DataError when the training estimate exceeds the memory free on `device` (or, for data, the CPU)."""
    est = estimate(graph)
    needs: list[tuple[torch.device, list[_Part]]] = [(device, training_parts(spec, graph, device, est))]
    if device.type != "cpu" and est.data.bytes:
        data_part = needs[0][1][-1]
        needs.append((torch.device("cpu"), [data_part]))
    _refuse_over(needs, est, "training")


def evaluation_parts(spec: Spec, graph: Graph, batch_size: int, est: MemoryEstimate | None = None) -> list[_Part]:
    """What evaluating needs beside the dataset: the weights and one batch's forward pass, without
    gradients, optimizer state or the backward pass (outputs are freed layer by layer, so the pass
    counts the input and the largest output only: it errs low, like the training estimate)."""
    est = est or estimate(graph)
    heavy, big = est.heaviest_weights, est.heaviest_output
    largest = math.prod(big.output_shape) if big is not None else 0
    per_image = (math.prod(graph.input_shape) + largest) * BYTES_FP32
    return [
        _Part(f"weights ({graph.total_params:,} params)", est.weights, heavy.location if heavy else None),
        _Part(
            f"activations: {format_bytes(per_image)} per image (forward only) × batch {batch_size}",
            per_image * batch_size,
            big.location if big else None,
        ),
    ]


def ensure_evaluation_fits(spec: Spec, graph: Graph, device: torch.device, batch_size: int) -> None:
    """DataError when evaluating (`cnnspec evaluate`) would not fit: the model and a batch of
    `batch_size` on `device`, the dataset on the CPU (where evaluate keeps it)."""
    est = estimate(graph)
    model = evaluation_parts(spec, graph, batch_size, est)
    data = [_Part(f"the dataset ({est.data.what})", est.data.bytes, spec.source.locate(est.data.path))]
    if device.type == "cpu":
        needs = [(device, model + (data if est.data.bytes else []))]
    else:
        needs = [(device, model), (torch.device("cpu"), data)] if est.data.bytes else [(device, model)]
    _refuse_over(needs, est, "evaluating")


def _refuse_over(needs: list[tuple[torch.device, list[_Part]]], est: MemoryEstimate, doing: str) -> None:
    """DataError naming the estimate, the free memory and the part that dominates, for the first
    device whose parts do not fit."""
    for where, parts in needs:
        free = available_memory(where)
        total = sum(p.bytes for p in parts)
        if free is None or total <= free:
            continue
        top = max(parts, key=lambda p: p.bytes)
        notes = tuple(f"{p.what}: {format_bytes(p.bytes)}" for p in parts)
        big = est.heaviest_output
        if big is not None and top.what.startswith("activations"):
            shape = "×".join(map(str, big.output_shape))
            notes += (f"the largest output is '{big.id}' ({big.kind}): {shape} per image",)
        hint = (
            "lower data.batch_size, the model's size, data.resize or the dataset's size;"
            " or train on a machine with more memory"
            if doing == "training"
            else "lower data.eval_batch_size in the run's spec.yaml, or evaluate on a machine with more memory"
        )
        if top.what.startswith("augmentation"):
            hint = "lower data.batch_size or the augmentation's padding; or train on a machine with more memory"
        raise DataError(
            Diagnostic(
                f"{doing} needs an estimated {format_bytes(total)} but the {where.type} has"
                f" {format_bytes(free)} free; most of it is {top.what.split(':')[0]}",
                top.location,
                notes=notes,
                hint=hint,
            )
        )
