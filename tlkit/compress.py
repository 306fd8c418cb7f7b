"""Chapter 5: make a transferred model small and fast, and measure every claim.

The pieces, in the order the chapter uses them:

    loss = distillation_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5)
    ds = TeacherDataset(base_ds, teacher_logits, labels)          # labels -100 = unlabelled snippet
    dl = teacher_loader(ds, 32, collate=text.PadCollate(), shuffle=True, seed=0)
    train.fit(student, dl, None, cfg, step=distill_step(temperature=2.0, alpha=0.5))
    student = shallow_copy(teacher, keep=every_other(6, 3))       # DistilBERT's initialisation
    q = quantize_int8(model)                                      # dynamic int8 Linear layers, a scale per row (a copy)
    magnitude_prune(model, 0.5)                                   # zeros stored densely: same size
    prune_heads(model, keep=8); prune_ffn(model, keep=0.5)        # physically smaller matrices
    size_bytes(model); latency_ms(model, batch, threads=1)        # what shipping costs
    compare_latency({"a": m1, "b": m2}, batches)                  # speed-ups timed head to head
    pareto_front(acc, cost)                                       # the variants worth keeping

Why each exists: distillation moves what a big model knows into a small one
through its *outputs*, so unlabelled text becomes training signal; int8 and
structured pruning shrink the arithmetic; unstructured pruning is here to show
that zeros stored in a dense matrix shrink nothing. Sizes are serialized
``state_dict`` bytes, latencies medians at a fixed thread count, so numbers from
two runs on one machine compare.

Imports ``transformers`` nowhere; works on any ``BertClassifier`` (tlkit.text) and
on plain modules where a function says so.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import train as _train

IGNORE = -100  # label of an unlabelled snippet: only the teacher's soft targets train on it


# --------------------------------------------------------------------------- distillation
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
                      *, temperature: float = 2.0, alpha: float = 0.5) -> dict[str, torch.Tensor]:
    """Knowledge-distillation loss of Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a
    Neural Network":

        loss = alpha * T^2 * KL( softmax(t / T) || softmax(s / T) )  +  (1 - alpha) * CE(s, y)

    ``s = student_logits (N, C)``, ``t = teacher_logits (N, C)``, ``labels (N,)`` class indices with
    ``-100`` for unlabelled rows. The KL term averages over all ``N`` rows (every row has a teacher
    output); the cross-entropy averages over the labelled rows only (0 when a batch has none), so an
    unlabelled snippet trains the student through the teacher alone. ``T^2`` keeps the soft term's
    gradients the same size whatever the temperature (they scale as ``1/T^2``). ``alpha = 0`` is plain
    cross-entropy; ``alpha = 1`` ignores the labels.

    Returns ``{"loss", "kl", "ce"}`` (scalars; ``kl`` already includes ``T^2``).

    >>> s, t = torch.randn(4, 2), torch.randn(4, 2)
    >>> out = distillation_loss(s, t, torch.tensor([0, 1, -100, -100]), temperature=2.0, alpha=0.5)
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the weight of the teacher's soft targets) must be in [0, 1], got {alpha}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape (N, C)")
    s = student_logits.float()
    t = teacher_logits.detach().float()
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                  reduction="batchmean", log_target=True) * temperature ** 2
    if labels is not None and bool((labels != IGNORE).any()):
        ce = F.cross_entropy(s, labels, ignore_index=IGNORE)
    else:
        ce = s.new_zeros(())
    return {"loss": alpha * kl + (1.0 - alpha) * ce, "kl": kl, "ce": ce}


def soften(logits: torch.Tensor | np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / T)`` as numpy, ``(N, C) -> (N, C)``: what the student sees at temperature ``T``."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    return torch.softmax(z / temperature, -1).numpy()


class TeacherDataset(torch.utils.data.Dataset):
    """``base`` (a dataset whose items are ``(x, label)``) with the teacher's logits and the labels the
    student may use: item i is ``(x_i, label_i, teacher_logits_i (C,))``, ``label_i = -100`` for an
    unlabelled snippet. ``teacher_logits (N, C)`` come from ``predict_logits`` (computed once, cached)."""

    def __init__(self, base: torch.utils.data.Dataset, teacher_logits: torch.Tensor | np.ndarray,
                 labels: Sequence[int] | np.ndarray):
        t = torch.as_tensor(np.asarray(teacher_logits), dtype=torch.float32)
        labels = np.asarray(labels, dtype=np.int64)
        if not (len(base) == len(t) == len(labels)):
            raise ValueError(f"base has {len(base)} items, teacher_logits {len(t)} rows and labels {len(labels)}: "
                             "give one teacher output and one label (or -100) per item")
        if t.dim() != 2:
            raise ValueError(f"teacher_logits must be (N, C), got shape {tuple(t.shape)}")
        self.base, self.teacher, self.labels = base, t, labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Any, int, torch.Tensor]:
        return self.base[i][0], int(self.labels[i]), self.teacher[i]

    @property
    def n_labelled(self) -> int:
        return int((self.labels != IGNORE).sum())


@dataclass
class TeacherCollate:
    """Batch ``[(x, label, teacher_logits), ...]`` into ``(inputs, labels (B,), teacher_logits (B, C))``.

    ``collate`` is the base dataset's own collate (``text.PadCollate`` gives a dict of ``(B, T)``
    tensors, ``embeddings.collate`` a ``(B, L)`` id tensor); its labels are replaced by ours, which
    may be -100."""

    collate: Callable[[list], Any]

    def __call__(self, batch: Sequence[tuple[Any, int, torch.Tensor]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        out = self.collate([(x, 0) for x, _, _ in batch])
        if isinstance(out, Mapping):
            inputs = {k: v for k, v in out.items() if k not in _train.LABEL_KEYS}
        elif isinstance(out, (tuple, list)):
            inputs = out[0]
        else:
            inputs = out
        labels = torch.tensor([y for _, y, _ in batch], dtype=torch.long)
        return inputs, labels, torch.stack([t for _, _, t in batch])


def teacher_loader(ds: TeacherDataset, batch_size: int = 32, *, collate: Callable[[list], Any],
                   shuffle: bool = True, seed: int = 0) -> torch.utils.data.DataLoader:
    """A seeded loader of ``(inputs, labels, teacher_logits)`` batches for ``distill_step``."""
    return _train.loader(ds, batch_size, shuffle=shuffle, seed=seed, collate_fn=TeacherCollate(collate))


def distill_step(temperature: float = 2.0, alpha: float = 0.5, teacher: nn.Module | None = None
                 ) -> Callable[[nn.Module, Any, _train.StepContext], dict[str, torch.Tensor]]:
    """A step for ``fit(step=...)`` (like chapter 4's ``dann_step``) that trains with ``distillation_loss``.

    Batches are ``(inputs, labels, teacher_logits)`` from ``teacher_loader``; without the third
    element, ``teacher`` (required then) is run on the inputs under ``torch.no_grad()`` in eval mode.
    Logs ``kl``, ``ce``, ``acc`` (on the labelled rows; NaN for a batch without any, so an epoch's
    mean is NaN when some batch had none: read ``agree`` then) and ``agree`` (the share of rows
    where student and teacher pick the same class: a label-free signal of how well it imitates).
    """
    distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), temperature=temperature, alpha=alpha)  # check args now

    def step(model: nn.Module, batch: Any, ctx: _train.StepContext) -> dict[str, torch.Tensor]:
        if isinstance(batch, (tuple, list)) and len(batch) == 3:
            inputs, y, t = batch
        else:
            if teacher is None:
                raise _train.DataError("distill_step got batches without teacher logits: use teacher_loader(...) "
                                       "or pass teacher= to compute them on the fly")
            inputs, y = _train.split_batch(batch)
            was = teacher.training
            teacher.eval()
            with torch.no_grad():
                t = _train.forward(teacher, inputs)
            teacher.train(was)
        s = _train.forward(model, inputs)
        parts = distillation_loss(s, t, y, temperature=temperature, alpha=alpha)
        pred = s.argmax(-1)
        labelled = y != IGNORE
        acc = (pred[labelled] == y[labelled]).float().mean() if bool(labelled.any()) else torch.tensor(float("nan"))
        return {"loss": parts["loss"], "kl": parts["kl"].detach(), "ce": parts["ce"].detach(), "n": len(y),
                "acc": acc, "agree": (pred == t.argmax(-1)).float().mean()}

    step.__name__ = f"distill_step(T={temperature:g}, alpha={alpha:g})"
    return step


@torch.no_grad()
def predict_logits(model: nn.Module, dl: Any) -> torch.Tensor:
    """Logits ``(N, C)`` of ``model`` over a loader of ``(inputs, labels)`` batches, in loader order,
    under ``no_grad`` in eval mode (restored after)."""
    return _train.predict(model, dl)[0]


# --------------------------------------------------------------------------- students
def every_other(n_layers: int, depth: int) -> list[int]:
    """Indices of ``depth`` of ``n_layers`` layers, evenly spaced from the bottom: DistilBERT's "one
    out of two" for ``depth = n_layers / 2`` (``every_other(6, 3) == [0, 2, 4]``)."""
    if not 1 <= depth <= n_layers:
        raise ValueError(f"depth must be between 1 and {n_layers} (the teacher's layers), got {depth}")
    return [int(i * n_layers // depth) for i in range(depth)]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The Transformer blocks of a ``BertClassifier`` (``model.encoder.encoder.layer``)."""
    try:
        return model.encoder.encoder.layer
    except AttributeError as exc:
        raise TypeError(f"{type(model).__name__} has no BERT-style encoder.encoder.layer list: compress's "
                        "Transformer functions need a tlkit.text.BertClassifier") from exc


def shallow_copy(teacher: nn.Module, keep: Sequence[int]) -> nn.Module:
    """A student that is a deep copy of ``teacher`` (a ``BertClassifier``) keeping only the encoder
    layers ``keep`` (in that order), with the teacher's embeddings and head: DistilBERT's
    initialisation (Sanh et al. 2019 take one layer out of two). Layer ``i`` of the student is a
    tensor-for-tensor copy of teacher layer ``keep[i]``; the teacher is unchanged."""
    n = len(encoder_layers(teacher))
    keep = [int(k) for k in keep]
    if not keep or any(not 0 <= k < n for k in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"keep must be distinct layer indices in 0..{n - 1}, got {keep}")
    layers = encoder_layers(teacher)
    # copy everything but the dropped layers (no transient full copy of them)
    memo = {id(layers[i]): None for i in range(n) if i not in keep}
    student = copy.deepcopy(teacher, memo)
    enc = student.encoder.encoder
    enc.layer = nn.ModuleList([enc.layer[i] for i in keep])
    student.hf.config.num_hidden_layers = len(keep)
    for i, layer in enumerate(enc.layer):  # cache bookkeeping in newer transformers reads layer_idx
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = i
    student.kept_layers = tuple(keep)
    return student


def student_groups(model: nn.Module) -> list:
    """The model's layer groups with every encoder layer in one ``"encoder"`` group, so students of any
    depth have the same group names (``word_embeddings, embeddings, encoder, head``): what a control
    panel that rebuilds the student at another depth needs (``TrainPanel(groups=student_groups)``)."""
    from . import surgery

    out, merged = [], None
    for g in surgery.layer_groups(model):
        if g.name.startswith("layer"):
            if merged is None:
                merged = surgery.LayerGroup("encoder", [], note="all encoder layers")
                out.append(merged)
            merged.modules.extend(g.modules)
        else:
            out.append(g)
    return out


def encoder_params(model: nn.Module) -> int:
    """Parameters of the Transformer blocks (embeddings and head excluded): what depth and pruning change."""
    return sum(p.numel() for p in encoder_layers(model).parameters())


def n_params(model: nn.Module) -> int:
    """All parameters; for a quantized model, the elements of its packed weights and biases too."""
    total = sum(p.numel() for p in model.parameters())
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            w, b = packed._weight_bias()
            total += w.numel() + (b.numel() if b is not None else 0)
    return total


# --------------------------------------------------------------------------- size and latency
def size_bytes(model: nn.Module | Mapping[str, Any]) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the file you would ship (int8 packed weights
    count as what they serialize to; masked zeros of unstructured pruning count in full)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    sink = _ByteCounter()
    torch.save(state, sink)
    return sink.n


class _ByteCounter:
    """A write-only file that counts what ``torch.save`` writes and keeps none of it: measuring a size
    this way costs no memory (a ``BytesIO`` held the whole file, ~90 MB for MiniLM, more while it grew)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.n += n
        return n

    def flush(self) -> None:
        pass


def linear_weight_bytes(model: nn.Module) -> int:
    """Serialized bytes of the Linear layers only (float ``nn.Linear`` or dynamic-int8 ones): the part
    dynamic quantization changes (the embedding matrices stay float32)."""
    state = {}
    for name, m in model.named_modules():
        # a dynamic-int8 Linear is torch.ao.nn.quantized.dynamic.Linear (its packed weights inside)
        if isinstance(m, nn.Linear) or (type(m).__name__ == "Linear" and hasattr(m, "_packed_params")):
            state.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    if not state:
        raise ValueError(f"{type(model).__name__} has no Linear layers")
    return size_bytes(state)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.inference_mode()
def latency_ms(model: nn.Module, inputs: Any, *, threads: int = 1, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time (milliseconds) of one forward pass of ``model`` on ``inputs`` (a tensor or a
    dict of tensors, e.g. a padded text batch) with ``threads`` PyTorch threads, in eval mode.

    The median of ``repeats`` timed calls after ``warmup`` untimed ones: robust to the odd slow
    call, but on a busy machine every number is slower, so compare only numbers from one run."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    was = model.training
    model.eval()
    times = []
    try:
        with num_threads(threads):
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                _train.forward(model, inputs)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was)
    return 1000.0 * statistics.median(times)


def compare_latency(models: Mapping[str, nn.Module], batches: Mapping[str, Any], *, threads: int = 1,
                    repeats: int = 30, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Median latency (ms) of every model on every batch, timed **head to head**: ``{model: {batch: ms}}``.

    For each batch, every model first runs ``warmup`` untimed calls; then ``repeats`` rounds time one
    call of each model in turn (``latency_ms(..., repeats=1)``), so a change in the machine's load hits
    all models alike instead of whichever was being timed then, and a speed-up is the ratio of two
    medians taken over the same stretch of time. The defaults (1 thread, 30 rounds, 2 warm-up calls)
    are the protocol that ``benchmarks/compression.py`` and chapter 5's claims share, so their ratios
    compare; on a loaded machine they are still only indicative."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    times: dict[str, dict[str, list[float]]] = {n: {b: [] for b in batches} for n in models}
    for b, x in batches.items():
        for model in models.values():
            if warmup:
                latency_ms(model, x, threads=threads, repeats=1, warmup=warmup - 1)
        for _ in range(repeats):
            for name, model in models.items():
                times[name][b].append(latency_ms(model, x, threads=threads, repeats=1, warmup=0))
    return {n: {b: statistics.median(t) for b, t in per.items()} for n, per in times.items()}


def fixed_batch(dl: Any, size: int) -> Any:
    """The first ``size`` rows of a loader's data as one batch (inputs only): the same input for every
    model's latency. Rows are taken from consecutive batches until ``size`` are gathered."""
    taken, rows = [], 0
    for batch in dl:
        inputs, _ = _train.split_batch(batch)
        taken.append(inputs)
        rows += len(next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs)
        if rows >= size:
            break
    if rows < size:
        raise ValueError(f"the loader has only {rows} rows; a batch of {size} was asked for")
    if isinstance(taken[0], Mapping):
        width = max(t["input_ids"].shape[1] for t in taken)
        cat = {k: torch.cat([F.pad(t[k], (0, width - t[k].shape[1])) for t in taken])[:size] for k in taken[0]}
        return cat
    width = max(t.shape[1] for t in taken)
    return torch.cat([F.pad(t, (0, width - t.shape[1])) for t in taken])[:size]


# --------------------------------------------------------------------------- quantization
_DEPRECATIONS = (r"torch\.ao\.quantization is deprecated", r".*quantize_per_tensor.*deprecated",
                 r".*TypedStorage is deprecated")


def int8_backend() -> str:
    """Which dynamic-int8 path ``quantize_int8`` uses by default: ``"torch.ao"`` (eager
    ``quantize_dynamic``, in every torch the kit supports, deprecated since 2.10 in favour of torchao)
    or ``"none"`` when this torch no longer has it."""
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return "none"
    return "torch.ao"


def torchao_available() -> bool:
    """Whether the optional ``torchao`` package is importable (the kit does not install it)."""
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def quantize_int8(model: nn.Module, *, inplace: bool = False, backend: str = "torch.ao",
                  per_channel: bool = True) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are dynamic int8: weights stored as int8,
    activations quantized on the fly per batch (Jacob et al. 2018; PyTorch's BERT dynamic-quantization
    tutorial). Embeddings and LayerNorms stay float32. CPU inference only.

    ``per_channel=True`` (default) gives every output row of a weight matrix its own scale
    (``per_channel_dynamic_qconfig``); ``False`` uses one scale per matrix, as PyTorch's BERT tutorial
    does. Why per row: in MiniLM's feed-forward output layers the largest row reaches ~19x the
    magnitude of a typical row (up to 42x), so one shared scale leaves a typical row only a handful of
    the 255 int8 levels; on chapter 5's fine-tuned teachers (CPU preset, 3 seeds) one scale per
    matrix cost 1.0-1.4 points of test accuracy and one per row 0.2-0.4 (27 vs 17-25 of 500
    predictions changed), at the same speed. The row scales cost 16 bytes a row (~0.3 MB on MiniLM).

    ``backend="torch.ao"`` (default) is ``torch.ao.quantization.quantize_dynamic``. In torch >= 2.10
    it warns that it is deprecated in favour of torchao; those known warnings are silenced here (not
    others), because the chapter chose it by measuring: on a 2-core x86 CPU torchao's int8 path was
    barely faster than float32 while this one was several times faster (``benchmarks/compression.py``
    compares both when torchao is installed). ``backend="torchao"`` is torchao's
    ``quantize_(model, Int8DynamicActivationInt8WeightConfig())`` (per-channel weight scales only), for
    that comparison; it needs ``pip install torchao``. ``inplace=True`` converts ``model`` itself
    (moved to the CPU) instead of a copy: one model's memory less. Raises with the fix when the
    asked-for backend is missing or cannot do what was asked."""
    if backend not in ("torch.ao", "torchao"):
        raise ValueError(f"backend must be 'torch.ao' or 'torchao', got {backend!r}")
    if backend == "torchao" and not per_channel:
        raise ValueError("backend='torchao' quantizes weights per channel only: use per_channel=True, or "
                         "backend='torch.ao' for one scale per matrix")
    source = (model if inplace else copy.deepcopy(model)).cpu().eval()
    if backend == "torchao":
        if not torchao_available():
            raise RuntimeError("backend='torchao' needs the torchao package: pip install torchao")
        import logging

        log = logging.getLogger("torch.utils._pytree")   # torchao's import registers enums torch now warns about
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        finally:
            log.setLevel(level)
        quantize_(source, Int8DynamicActivationInt8WeightConfig())
        return source
    if int8_backend() == "none":
        raise RuntimeError("this PyTorch has no torch.ao.quantization.quantize_dynamic (removed in your version): "
                           "install a torch the kit supports (see pyproject.toml), or pip install torchao and "
                           "use quantize_int8(model, backend='torchao')")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine == "none" and engines:
        torch.backends.quantized.engine = next(e for e in ("x86", "fbgemm", "qnnpack") if e in engines)
    spec = {nn.Linear: per_channel_dynamic_qconfig} if per_channel else {nn.Linear}
    with warnings.catch_warnings():
        for pattern in _DEPRECATIONS:
            warnings.filterwarnings("ignore", message=pattern)
        # in place on `source`, which is already our own copy when inplace=False (quantize_dynamic's own
        # copy would hold a second float model in memory while it converts)
        return quantize_dynamic(source, spec, dtype=torch.qint8, inplace=True)


# --------------------------------------------------------------------------- pruning
def prunable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The encoder's Linear layers (attention and feed-forward), the usual target of pruning; the
    head and embeddings are left alone."""
    return [(n, m) for n, m in encoder_layers(model).named_modules() if isinstance(m, nn.Linear)]


def magnitude_prune(model: nn.Module, amount: float) -> float:
    """Global unstructured magnitude pruning of the encoder's Linear weights, in place: the ``amount``
    fraction of smallest-magnitude weights across all those layers become 0 (one global threshold,
    as ``torch.nn.utils.prune.global_unstructured`` with L1 picks), applied layer by layer with
    ``prune.custom_from_mask`` and made permanent with ``prune.remove``. Layer by layer because
    ``global_unstructured`` keeps a float mask and a copy of every weight at once (~500 MB more peak
    memory on MiniLM). The zeros are stored in the same dense tensors, so the model is neither
    smaller nor faster. Returns the measured sparsity of those weights."""
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount (the fraction of weights set to zero) must be in [0, 1), got {amount}")
    layers = [m for _, m in prunable_linears(model)]
    total = sum(m.weight.numel() for m in layers)
    k = int(round(amount * total))
    if k > 0:
        # the k-th smallest |w| over all layers, found in one float32 buffer partitioned in place: a
        # torch.cat of per-layer |w| copies plus kthvalue's own copy and int64 indices took ~5x that
        # buffer (~200 MB more peak memory on MiniLM)
        magnitudes = torch.empty(total, dtype=torch.float32)
        start = 0
        with torch.no_grad():
            for m in layers:
                n = m.weight.numel()
                torch.abs(m.weight.detach().reshape(-1).float().cpu(), out=magnitudes[start:start + n])
                start += n
        flat = magnitudes.numpy()
        flat.partition(k - 1)
        threshold = float(flat[k - 1])
        del magnitudes, flat
        for m in layers:
            prune.custom_from_mask(m, "weight", mask=m.weight.detach().abs() > threshold)
            prune.remove(m, "weight")
    return sparsity(model)


def sparsity(model: nn.Module) -> float:
    """Fraction of exact zeros in the encoder's Linear weights."""
    ws = [m.weight for _, m in prunable_linears(model)]
    return float(sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws))


def weight_row_spread(model: nn.Module) -> dict[str, float]:
    """For every Linear layer of the encoder (``prunable_linears`` names, e.g. ``"0.output.dense"``): the
    largest output row's max ``|w|`` divided by the median row's max ``|w|``. One int8 scale per matrix is
    set by the largest row, so a typical row then uses only about ``127 / spread`` of int8's positive
    levels; one scale per row (``quantize_int8``'s default) gives every row all of them."""
    out = {}
    for name, m in prunable_linears(model):
        row_max = m.weight.detach().abs().amax(1)
        out[name] = float(row_max.max() / row_max.median().clamp_min(torch.finfo(row_max.dtype).tiny))
    return out


def _slice_linear(lin: nn.Linear, idx: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of ``lin`` keeping output rows (``dim=0``) or input columns (``dim=1``) ``idx``."""
    w = lin.weight.detach().index_select(dim, idx).clone()
    out_f, in_f = w.shape
    new = nn.Linear(in_f, out_f, bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if lin.bias is not None:
            new.bias.copy_(lin.bias.detach() if dim == 1 else lin.bias.detach().index_select(0, idx))
    new.weight.requires_grad_(lin.weight.requires_grad)
    return new


def head_importance(layer: nn.Module) -> torch.Tensor:
    """One score per attention head of a BERT layer: the L2 norm of its slice of the query, key, value
    and output weights (a magnitude criterion; Michel et al. 2019 use gradients, which need data)."""
    sa, out = layer.attention.self, layer.attention.output.dense
    hs = sa.attention_head_size
    rows = lambda w: w.detach().view(-1, hs, w.shape[1]).pow(2).sum((1, 2))  # noqa: E731
    cols = out.weight.detach().view(out.weight.shape[0], -1, hs).pow(2).sum((0, 2))
    return (rows(sa.query.weight) + rows(sa.key.weight) + rows(sa.value.weight) + cols).sqrt()


def prune_heads(model: nn.Module, keep: int) -> dict[str, int]:
    """Physically remove attention heads, in place: in every encoder layer keep the ``keep`` heads with
    the largest ``head_importance`` and slice the query/key/value rows and the output projection's
    columns of the others away (what transformers' ``prune_heads`` did before v5 removed it). The
    matrices shrink, so size and latency do too. Returns ``{"params_before", "params_after",
    "removed", "heads_before", "heads_after"}`` (parameter counts of the whole model)."""
    before = n_params(model)
    heads_before = heads_after = 0
    for layer in encoder_layers(model):
        sa, att_out = layer.attention.self, layer.attention.output
        n, hs = sa.num_attention_heads, sa.attention_head_size
        if not 1 <= keep <= n:
            raise ValueError(f"keep must be between 1 and {n} heads per layer, got {keep}")
        heads = torch.sort(torch.topk(head_importance(layer), keep).indices).values
        idx = (heads[:, None] * hs + torch.arange(hs)).reshape(-1).to(sa.query.weight.device)
        sa.query, sa.key, sa.value = (_slice_linear(lin, idx, 0) for lin in (sa.query, sa.key, sa.value))
        att_out.dense = _slice_linear(att_out.dense, idx, 1)
        sa.num_attention_heads, sa.all_head_size = keep, keep * hs
        heads_before, heads_after = heads_before + n, heads_after + keep
    after = n_params(model)
    return {"params_before": before, "params_after": after, "removed": before - after,
            "heads_before": heads_before, "heads_after": heads_after}


def prune_ffn(model: nn.Module, keep: float) -> dict[str, int]:
    """Physically remove feed-forward channels, in place: in every encoder layer keep the ``keep``
    fraction of the intermediate channels whose in- and out-weights have the largest L2 norm
    (``intermediate.dense`` rows, ``output.dense`` columns). Returns parameter counts like
    ``prune_heads`` plus ``"channels_before"``/``"channels_after"``."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep (fraction of feed-forward channels kept) must be in (0, 1], got {keep}")
    before = n_params(model)
    ch_before = ch_after = 0
    for layer in encoder_layers(model):
        up, down = layer.intermediate.dense, layer.output.dense
        score = up.weight.detach().pow(2).sum(1) + down.weight.detach().pow(2).sum(0)
        k = max(1, int(round(keep * up.out_features)))
        idx = torch.sort(torch.topk(score, k).indices).values
        ch_before, ch_after = ch_before + up.out_features, ch_after + k
        layer.intermediate.dense = _slice_linear(up, idx, 0)
        layer.output.dense = _slice_linear(down, idx, 1)
    after = n_params(model)
    return {"params_before": before, "params_after": after, "removed": before - after,
            "channels_before": ch_before, "channels_after": ch_after}


# --------------------------------------------------------------------------- cache
def cached(name: str, key: Mapping[str, Any], compute: Callable[[], Any], *, directory: Any = None) -> tuple[Any, bool]:
    """``compute()`` once, then from disk: ``(value, hit)``. ``value`` is anything ``torch.save`` writes (a
    state dict, a tensor). The file is ``<directory>/<name>-<hash of key>.pt`` (default directory
    ``assets.cache_home()/"models"``, the user's writable cache); any change in ``key`` (data, settings)
    computes anew. Written atomically, so an interrupted run never leaves a half file that looks valid."""
    import hashlib
    import json
    import os
    from pathlib import Path

    from . import assets

    folder = Path(directory) if directory is not None else assets.cache_home() / "models"
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = folder / f"{name}-{digest}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is recomputed, and we say so
            warnings.warn(f"cache file {path} could not be read ({type(exc).__name__}: {exc}); recomputing it")
    value = compute()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value, False


def text_key(texts: Sequence[str], labels: Sequence[int] | None = None) -> str:
    """A short hash of texts (and labels) for ``cached`` keys."""
    import hashlib

    h = hashlib.sha1()
    for t in texts:
        h.update(str(t).encode("utf-8", "replace") + b"\x00")
    if labels is not None:
        h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- comparing variants
def pareto_front(accuracy: Sequence[float], cost: Sequence[float]) -> np.ndarray:
    """Boolean mask of the variants no other variant beats on both axes (higher accuracy AND lower
    cost, at least one strictly): the ones worth shipping. ``accuracy, cost: (N,)``."""
    a, c = np.asarray(accuracy, float), np.asarray(cost, float)
    if a.shape != c.shape:
        raise ValueError(f"accuracy {a.shape} and cost {c.shape} must have the same length")
    dominated = ((a[None, :] >= a[:, None]) & (c[None, :] <= c[:, None])
                 & ((a[None, :] > a[:, None]) | (c[None, :] < c[:, None]))).any(1)
    return ~dominated


@dataclass
class Measurer:
    """Accuracy, size and latency of model variants on one test set and fixed batches, as table rows.

    ``batches`` maps a name (``"b1"``, ``"b32"``) to a fixed input (``fixed_batch``); ``threads`` is
    the thread count every latency is measured at."""

    test_dl: Any
    batches: Mapping[str, Any]
    threads: int = 1
    repeats: int = 20
    warmup: int = 3
    rows: list[dict[str, Any]] = field(default_factory=list)

    def measure(self, name: str, model: nn.Module, *, test_dl: Any = None, batches: Mapping[str, Any] | None = None,
                **extra: Any) -> dict[str, Any]:
        """Evaluate ``model`` and add a row ``{variant, acc, size_mb, linear_mb, params, lat_<b>_ms, ...}``
        (replacing an earlier row of that name). ``test_dl``/``batches`` override the shared ones for a
        model that reads other inputs (the GloVe student reads word ids): same texts, its own encoding."""
        m = _train.evaluate(model, test_dl if test_dl is not None else self.test_dl, device="cpu")
        row = {"variant": name, "acc": m["acc"], "bacc": m["bacc"], "size_mb": size_bytes(model) / 1e6,
               "linear_mb": linear_weight_bytes(model) / 1e6, "params": n_params(model)}
        for b, inputs in (batches if batches is not None else self.batches).items():
            row[f"lat_{b}_ms"] = latency_ms(model, inputs, threads=self.threads, repeats=self.repeats,
                                             warmup=self.warmup)
        row.update(extra)
        self.rows = [r for r in self.rows if r["variant"] != name] + [row]
        return row

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("variant")


# --------------------------------------------------------------------------- the control panel
class ShipCheck:
    """Measure a panel run's model as it would ship, at the end of every run: a callback.

    ``step_fn(temperature, alpha, sparsity, int8)`` is the panel's ``step_fn``: it remembers the
    compression settings of the run about to start and returns ``distill_step(temperature, alpha)``.
    At ``fit_end`` the callback copies the trained model, prunes it to ``sparsity`` (magnitude,
    unstructured), quantizes it when ``int8``, and measures accuracy, size and latency with
    ``measurer`` (the trained model itself is left as it is). ``board(panel)`` joins these
    measurements to the panel's run board by run."""

    def __init__(self, measurer: Measurer, model: Callable[[], nn.Module] | None = None):
        self.measurer = measurer
        self.model = model            # returns the model the panel trains; set it after building the panel
        self.settings: dict[str, Any] = {}
        self.results: dict[int, dict[str, Any]] = {}  # id(state) -> measurements

    def step_fn(self, temperature: float = 2.0, alpha: float = 0.5, sparsity: float = 0.0, int8: bool = False):
        """The panel's ``step_fn``: remember this run's compression settings, return its distillation step."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.settings = {"temperature": temperature, "alpha": alpha, "sparsity": sparsity, "int8": bool(int8)}
        return distill_step(temperature, alpha)

    def __call__(self, event: str, state: _train.State, control: _train.Control) -> None:
        if event != "fit_end" or state.status == "failed" or state.step == 0:
            return
        if self.model is None:
            raise RuntimeError("ShipCheck does not know the panel's model: set ship.model = lambda: panel.model "
                               "right after building the panel")
        self._measure(self.model(), state)

    def _measure(self, model: nn.Module, state: _train.State) -> None:
        shipped = copy.deepcopy(model).cpu()
        s = self.settings.get("sparsity", 0.0)
        if s > 0:
            magnitude_prune(shipped, s)
        if self.settings.get("int8"):
            shipped = quantize_int8(shipped, inplace=True)
        row = self.measurer.measure(f"panel run {len(self.results) + 1}", shipped)
        del shipped
        self.results[id(state)] = {k: row[k] for k in row if k != "variant"} | dict(self.settings)

    def board(self, panel: Any):
        """The panel's run board with ``test acc``, ``size MB`` and latency columns of each shipped model."""
        import pandas as pd

        df = panel.runs.copy()
        cols = {"acc": "test_acc", "size_mb": "size_mb", **{k: k for k in self.measurer.rows[0] if k.startswith("lat_")}} \
            if self.measurer.rows else {}
        extra = []
        for run in panel.history:
            got = self.results.get(id(run.state), {})
            extra.append({new: got.get(old, float("nan")) for old, new in cols.items()}
                         | {k: got.get(k) for k in ("temperature", "alpha", "sparsity", "int8")})
        return pd.concat([df.reset_index(drop=True), pd.DataFrame(extra)], axis=1)


__all__ = ["IGNORE", "distillation_loss", "soften", "TeacherDataset", "TeacherCollate", "teacher_loader",
           "distill_step", "predict_logits", "every_other", "encoder_layers", "shallow_copy", "student_groups",
           "encoder_params", "cached", "text_key",
           "n_params", "size_bytes", "linear_weight_bytes", "num_threads", "latency_ms", "compare_latency",
           "fixed_batch",
           "int8_backend", "torchao_available", "quantize_int8", "weight_row_spread", "prunable_linears", "magnitude_prune", "sparsity", "head_importance",
           "prune_heads", "prune_ffn", "pareto_front", "Measurer", "ShipCheck"]
