"""The base class of every video_metrics metric: packed sync and deferred validation.

* **Packed sync.** All sum-reduced states travel in one ``all_reduce`` (as one float64 buffer:
  int64 counters are exact in float64 below 2**53) and all concatenated states in one
  ``all_gather`` of a byte buffer, after one ``all_gather`` of the per-rank sizes: at most three
  collectives per ``compute()``, whatever the number of states, and correct on ranks that saw no
  data. torchmetrics issues a barrier plus one or two gathers per state.
* **Deferred validation.** ``update()`` never reads tensor values on the host. Rows with bad
  values are counted on the device (``n_bad_target``, ``n_bad_score``) and left out of the
  result — in ``update()``, or, for metrics that keep every row anyway (exact AP/AUROC/PR
  curves), once over all rows at ``compute()`` — and ``compute()`` raises after the sync, so
  every rank takes the same decision and none raises while the others wait in a collective.
* **No data.** ``compute()`` with no valid row anywhere raises ``ValueError`` (one documented
  behaviour for all metrics).
* A rejected batch (bad shape, dtype, device) leaves the state untouched, update count included.
* **Errors leave the metric as it was.** When anything inside ``compute()`` (or the sync
  itself) raises, every rank's states are restored to their local, unsynced values before the
  exception propagates (torchmetrics' ``sync_context`` has no ``finally``: the synced, gathered
  states stayed, ``reset()`` then crashed on row states and sum states were counted again by the
  next ``compute()``). ``reset()`` works after any error.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat, dim_zero_sum

from ..functional.checks import NoDataError, check_row_counts, probabilities_warning, value_rules

__all__ = ["VideoMetric", "NoDataError", "count_collectives"]

# Counter that tests and benchmarks read to verify the number of collectives per sync.
COLLECTIVES = {"all_reduce": 0, "all_gather": 0}


def count_collectives() -> Dict[str, int]:
    """Collectives issued by video_metrics' packed sync in this process so far.

    >>> from video_metrics.metrics import count_collectives
    >>> sorted(count_collectives())
    ['all_gather', 'all_reduce']
    """
    return dict(COLLECTIVES)


class VideoMetric(Metric):
    """Base class: see the module docstring. Subclasses declare states with
    :meth:`add_sum_state` and :meth:`add_cat_state`, count each batch's valid and bad rows in
    ``update`` (``_count_rows``) and raise for them at the start of ``compute`` (``_check_rows``).

    >>> import torch
    >>> from video_metrics import TopKAccuracy
    >>> metric = TopKAccuracy(num_classes=3)
    >>> metric.update(torch.tensor([[0.1, 2.0, 0.3]]), torch.tensor([7]))  # a bad target: counted, not raised
    >>> metric.compute()
    Traceback (most recent call last):
    ...
    ValueError: TopKAccuracy: 1 row(s) with a `target` outside the valid labels (class indices must be in [0, 3)) were passed to update(); they were left out (0 valid row(s) kept). Fix the inputs, or call reset().
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better: Optional[bool] = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cat_specs: Dict[str, Tuple[torch.dtype, Tuple[int, ...]]] = {}
        self.add_sum_state("n_rows", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_bad_target", torch.zeros((), dtype=torch.long))
        self.add_sum_state("n_bad_score", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------- states
    def add_sum_state(self, name: str, default: Tensor) -> None:
        """A state summed across processes (sent in the one packed ``all_reduce``)."""
        self.add_state(name, default=default, dist_reduce_fx="sum")

    def add_cat_state(self, name: str, dtype: torch.dtype, trailing: Tuple[int, ...] = ()) -> None:
        """A concatenated state of rows with a fixed trailing shape and dtype."""
        self._cat_specs[name] = (dtype, tuple(trailing))
        self.add_state(name, default=[], dist_reduce_fx="cat")

    def add_row_states(self, num_classes: int, task: str) -> None:
        """Per-row states of metrics that keep rows: ``scores`` (fp32, C values), ``target``
        (class index, or C booleans for multilabel) and ``valid``."""
        self.add_cat_state("scores", torch.float32, (num_classes,))
        if task == "multiclass":
            self.add_cat_state("target", torch.long, ())
        else:
            self.add_cat_state("target", torch.bool, (num_classes,))
        self.add_cat_state("valid", torch.bool, ())

    #: rows of the first block of a state filled by :meth:`append_rows` (doubling up to ``_BLOCK_MAX_BYTES``)
    _BLOCK_MIN_ROWS = 1024
    _BLOCK_MAX_BYTES = 8 << 20

    def append_rows(self, name: str, rows: Tensor) -> None:
        """Append ``rows`` to the concatenated state ``name`` by copying them into a preallocated
        block (the state's list holds views of it), a new block when it is full: capacity doubling
        from ``_BLOCK_MIN_ROWS`` rows to ``_BLOCK_MAX_BYTES``. For metrics that keep a few small
        values per row over many batches: one small allocation per state and batch, interleaved
        with the batch's large temporaries, fragments glibc's per-thread arenas on CPU (a million
        YouTube-8M videos: 15 GB of RSS for a 203 MB state, against the state plus ~50 MB this
        way). Copies, never aliases, the caller's tensor."""
        dtype, trailing = self._cat_specs[name]
        blocks = self.__dict__.setdefault("_row_blocks", {})
        buf, filled = blocks.get(name, (None, 0))
        n = rows.shape[0]
        if buf is None or buf.device != rows.device or filled + n > buf.shape[0]:
            row_bytes = max(1, torch.Size(trailing).numel() * torch.empty((), dtype=dtype).element_size())
            grown = self._BLOCK_MIN_ROWS if buf is None else min(2 * buf.shape[0], max(1, self._BLOCK_MAX_BYTES // row_bytes))
            buf, filled = torch.empty((max(grown, n), *trailing), dtype=dtype, device=rows.device), 0
        view = buf[filled:filled + n]
        view.copy_(rows)
        blocks[name] = (buf, filled + n)
        getattr(self, name).append(view)

    def reset(self) -> None:
        """torchmetrics' ``reset``; the blocks of :meth:`append_rows` are let go (the states' views
        of them go with the states)."""
        self.__dict__.pop("_row_blocks", None)
        super().reset()

    def _cat(self, name: str) -> Tensor:
        value = getattr(self, name)
        dtype, trailing = self._cat_specs[name]
        if isinstance(value, Tensor):
            return value
        if len(value) == 0:
            return torch.zeros((0, *trailing), dtype=dtype, device=self.device)
        return torch.cat(value) if len(value) > 1 else value[0]

    # ------------------------------------------------------------------------------- validation
    def _count_rows(self, valid: Tensor, bad_target: Tensor, bad_score: Tensor) -> None:
        self.n_rows += valid.sum()
        self.n_bad_target += bad_target
        self.n_bad_score += bad_score

    def _check_rows(self) -> None:
        """Raise, after the sync and so on every rank alike, for bad rows or no data."""
        n = int(self.n_rows)
        check_row_counts(type(self).__name__, self._value_rules(), int(self.n_bad_target), int(self.n_bad_score), n)
        if "n_prob_like" in self._defaults:  # metrics whose value depends on input="logits"
            self._warn_if_probabilities(int(self.n_prob_like), n)

    def _warn_if_probabilities(self, n_prob_like: int, n_rows: int) -> None:
        """Warn once when every valid row looks like probabilities although ``input="logits"``
        (the input is never guessed: this only points at a likely mistake)."""
        if n_rows > 0 and n_prob_like == n_rows and not getattr(self, "_warned_probs", False):
            self._warned_probs = True
            warnings.warn(probabilities_warning(type(self).__name__, n_rows, getattr(self, "task", "")),
                          UserWarning, stacklevel=4)

    def _copy_state_dict(self) -> Dict[str, Any]:
        """The states as they are, for torchmetrics to put back later (its cache before a sync,
        and the accumulated state around each ``forward()``): tensors by reference, lists as new
        lists of the same chunks. torchmetrics clones every state here, a copy of every stored row
        at each sync and at each ``forward()`` step; ours are never written in place once another
        object holds them (``reset()`` makes new tensors and clears only the list it owns, the sync
        and ``compute()`` make new tensors), so references suffice."""
        return {attr: list(v) if isinstance(v, list) else v for attr, v in
                ((a, getattr(self, a)) for a in self._defaults)}

    # ------------------------------------------------------------- sync with error recovery
    def sync(self, dist_sync_fn: Optional[Callable] = None, process_group: Optional[Any] = None,
             should_sync: bool = True, distributed_available: Optional[Callable] = None) -> None:
        """torchmetrics' ``sync``; the states are restored to their local values if the sync raises."""
        try:
            super().sync(dist_sync_fn=dist_sync_fn, process_group=process_group, should_sync=should_sync,
                         distributed_available=distributed_available)
        except BaseException:
            # the sync failed half-way: put back the local states torchmetrics cached before it
            cache = getattr(self, "_cache", None)
            if cache is not None and not self._is_synced:
                for attr, val in cache.items():
                    setattr(self, attr, val)
                self._cache = None
            raise

    @contextmanager
    def sync_context(self, dist_sync_fn: Optional[Callable] = None, process_group: Optional[Any] = None,
                     should_sync: bool = True, should_unsync: bool = True,
                     distributed_available: Optional[Callable] = None) -> Generator:
        """torchmetrics' ``sync_context`` with a ``finally``: after an exception the local
        (unsynced) states are always restored."""
        self.sync(dist_sync_fn=dist_sync_fn, process_group=process_group, should_sync=should_sync,
                  distributed_available=distributed_available)
        try:
            yield
        except BaseException:
            if self._is_synced:
                self.unsync(should_unsync=True)
            raise
        self.unsync(should_unsync=self._is_synced and should_unsync)

    def synced(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the states synced across processes, as ``compute()`` does."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            return fn()

    def _value_rules(self) -> Tuple[str, str]:
        """What a valid target and valid scores are, for the errors of :meth:`_check_rows`."""
        return value_rules(getattr(self, "task", "multiclass"), getattr(self, "num_classes", "?"),
                           getattr(self, "input", "logits"))

    # ------------------------------------------------------------------- rejected batches
    def _wrap_update(self, update: Callable) -> Callable:
        wrapped = super()._wrap_update(update)

        @functools.wraps(update)
        def guarded(*args: Any, **kwargs: Any) -> None:
            self._declare_signature()
            count, computed = self._update_count, self._computed
            try:
                wrapped(*args, **kwargs)
            except (TypeError, ValueError):
                self._update_count, self._computed = count, computed
                raise

        return guarded

    _TM_ATTRS = frozenset({"compute_on_cpu", "dist_sync_on_step", "sync_on_compute", "compute_with_cache", "training"})

    #: options that only change compute() (not the states): left out of the signature
    _compute_options: Tuple[str, ...] = ()

    def signature(self) -> str:
        """The state's class and configuration. ``MetricCollection`` may let two metrics share
        state only when their signatures agree (never because their values happen to match after
        one batch). The class is the one that declares the states (e.g. precision, recall and F1
        share their counts), and options that only change ``compute()`` are left out."""
        cfg = sorted(
            (k, repr(v)) for k, v in vars(self).items()
            if not k.startswith("_") and k not in self._TM_ATTRS and k not in self._compute_options
            and isinstance(v, (int, float, str, bool, tuple, type(None)))
        )
        cls = self._state_class()
        return f"{cls.__module__}.{cls.__qualname__}{cfg}"

    def _state_class(self) -> type:
        """The most basic class whose states (and update) this metric uses unchanged."""
        return type(self)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The batch's value (torchmetrics' forward: the accumulated state is updated, and only the
        batch is computed, never everything accumulated so far)."""
        self._declare_signature()  # before torchmetrics snapshots the state names
        return super().forward(*args, **kwargs)

    def _declare_signature(self) -> None:
        # A zero-size state named after the signature: torchmetrics' compute groups require equal
        # state names, so metrics of different configuration are never merged.
        if getattr(self, "_signature_state", None) is None:
            name = "sig_" + hashlib.sha1(self.signature().encode()).hexdigest()[:16]
            self._signature_state = name
            self.add_state(name, default=torch.zeros(0, device=self.device), dist_reduce_fx="sum", persistent=False)

    # ------------------------------------------------------------------------- checkpoints
    def persistent(self, mode: bool = False) -> None:
        """As torchmetrics; the signature state is never saved (it holds nothing and is declared
        at the first update, so a fresh metric loading the checkpoint would not know it)."""
        super().persistent(mode)
        sig = getattr(self, "_signature_state", None)
        if sig is not None:
            self._persistent[sig] = False

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict, strict: bool,
                              missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + "sig_")]:
            state_dict.pop(key)  # written by video_metrics <= 0.1.0 when persistent(True) followed an update
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _wrap_compute(self, compute: Callable) -> Callable:
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def quiet(*args: Any, **kwargs: Any) -> Any:
            # A rank that received no batch is normal under DDP; no-data is reported by _check_rows.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
                return wrapped(*args, **kwargs)

        return quiet

    # ------------------------------------------------------------------------------------ plot
    plot_lower_bound: Optional[float] = 0.0
    plot_upper_bound: Optional[float] = 1.0

    def plot(self, val: Any = None, ax: Any = None) -> Tuple[Any, Any]:
        """torchmetrics' ``plot(val=None, ax=None) -> (fig, ax)``: ``val`` is a result of
        ``compute()``/``forward()`` or a list of them over steps (``None``: ``compute()`` now).
        Scalars, dicts of scalars and lists of them are drawn as torchmetrics draws them (one
        marker, or lines over steps); per-class vectors (``average="none"``) as horizontal bars.
        Subclasses draw their own objects (confusion matrix, reliability diagram, PR curves).
        Without ``ax`` a new ``Figure`` is made with its own canvas (not registered with pyplot)."""
        val = self.compute() if val is None else val
        return self._plot(val, ax)

    def _plot(self, val: Any, ax: Any = None) -> Tuple[Any, Any]:
        from torchmetrics.utilities.plot import plot_single_or_multi_val

        from .draw import draw_bars, figure_and_axes

        fig, ax = figure_and_axes(ax, 6.4, 4.8)
        if isinstance(val, Tensor) and val.numel() > 1 and val.ndim == 1:
            names = getattr(self, "class_names", None)
            draw_bars(ax, val, names, metric=type(self).__name__, shown=list(range(val.numel())))
            ax.set_title(f"{type(self).__name__} per class")
            return fig, ax
        if isinstance(val, dict):
            val = {k: v for k, v in val.items() if isinstance(v, Tensor)}
        plot_single_or_multi_val(val, ax=ax, higher_is_better=self.higher_is_better, lower_bound=self.plot_lower_bound,
                                 upper_bound=self.plot_upper_bound, name=type(self).__name__)
        return fig, ax

    # ------------------------------------------------------------------------------------ sync
    def _sync_dist(self, dist_sync_fn: Optional[Callable] = None, process_group: Optional[Any] = None) -> None:
        group = process_group or self.process_group
        sum_names = [n for n, fx in self._reductions.items() if fx is dim_zero_sum]
        cat_names = [n for n, fx in self._reductions.items() if fx is dim_zero_cat]
        other = set(self._reductions) - set(sum_names) - set(cat_names)
        if other:
            raise TypeError(f"{type(self).__name__}: states {sorted(other)} have a reduction packed sync cannot handle")
        if sum_names:
            self._sync_sums(sum_names, group)
        if cat_names:
            self._sync_rows(cat_names, group)

    def _sync_rows(self, names, group) -> None:
        """The concatenated states, after the sums (a subclass may keep them local: the suite's
        class-sharded compute)."""
        self._sync_cats(names, group)

    def _sync_sums(self, names, group) -> None:
        tensors = [getattr(self, n) for n in names]
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        COLLECTIVES["all_reduce"] += 1
        offset = 0
        for name, t in zip(names, tensors):
            part = flat[offset : offset + t.numel()].view(t.shape)
            offset += t.numel()
            if not t.is_floating_point():
                part = part.round()
            setattr(self, name, part.to(t.dtype))

    def _sync_cats(self, names, group) -> None:
        """The concatenated states in :func:`all_gather_packed`'s two collectives: the stored chunks
        are copied straight into one byte buffer, and each state becomes the list of its per-rank
        pieces, viewed in place (memory for the gathered rows once, plus the rank's own buffer)."""
        parts = []
        for name in names:
            value = getattr(self, name)
            parts.append([x for x in (value if isinstance(value, list) else [value]) if x.numel()])
        pieces, _ = all_gather_packed(parts, group, self.device)
        del parts
        for name, per_rank in zip(names, pieces):
            dtype, trailing = self._cat_specs[name]
            setattr(self, name, [raw.view(dtype).view(-1, *trailing) for raw in per_rank])


def all_gather_packed(parts: Sequence[Sequence[Tensor]], group, device) -> Tuple[List[List[Tensor]], Tensor]:
    """Every rank's tensors in two collectives, whatever their number, dtypes and sizes: one
    ``all_gather`` of the per-rank byte sizes of each entry of ``parts`` (a list of chunks), then one
    (``all_gather_single``: no per-rank output list to flatten) of one byte buffer holding all of
    them, each entry's bytes padded to 8 so that every piece can be viewed in its dtype. Returns,
    for each entry, its per-rank pieces (uint8 views into the gathered buffer) and the
    ``(world, entries)`` table of byte sizes. The one packed gather of the metrics' sync and of the
    suite's class shards."""
    world = dist.get_world_size(group)
    nbytes = [sum(x.numel() * x.element_size() for x in p) for p in parts]
    sizes = torch.tensor(nbytes, dtype=torch.long, device=device)
    all_sizes = [torch.zeros_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes, group=group)
    COLLECTIVES["all_gather"] += 1
    table = torch.stack(all_sizes).cpu()
    padded = (table + 7) // 8 * 8
    width = int(padded.sum(1).max())
    first = padded.cumsum(1) - padded  # where each entry starts in a rank's buffer
    buf = torch.zeros(width, dtype=torch.uint8, device=device)
    offset = 0
    for p, nb in zip(parts, nbytes):
        for x in p:
            k = x.numel() * x.element_size()
            buf[offset:offset + k] = x.contiguous().reshape(-1).view(torch.uint8)
            offset += k
        offset += -nb % 8
    gathered = torch.empty(world * width, dtype=torch.uint8, device=device)
    gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather_single(gathered, buf, group=group)
    COLLECTIVES["all_gather"] += 1
    pieces = [[gathered[r * width + int(first[r, i]):r * width + int(first[r, i]) + int(table[r, i])]
               for r in range(world)] for i in range(len(parts))]
    return pieces, table
