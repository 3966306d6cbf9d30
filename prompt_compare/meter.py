"""What a cell costs, measured while its method runs (no method cooperates or changes for it).

- forward tokens: token positions (padding included: the compute spent) of every forward pass
  through a transformers backbone (the module whose `base_model` is itself), counted by a global
  forward hook, so a weight-sharing copy (PEFT) or a functional call counts the same way;
- backward tokens: the positions of those passes that built an autograd graph (their output
  requires grad), i.e. the ones a backward pass then runs through;
- trainable values: the elements of every tensor an optimizer stepped (a global optimizer hook);
- peak memory: CUDA: the peak of allocated memory above the start; CPU: the process's peak resident
  memory (VmHWM, reset through /proc/self/clear_refs) above its resident memory at the start.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import resource
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class Meter:
    """Context manager: counts while active. forward_tokens, backward_tokens, trainable, peak_bytes,
    memory_source ('cuda', 'rss' or 'rss-max' when the peak could not be reset)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.forward_tokens = self.backward_tokens = 0
        self.peak_bytes, self.memory_source = 0, ""
        self._params: dict[int, int] = {}
        self._backbone: dict[int, bool] = {}
        self._handles: list = []
        self._base = 0

    @property
    def trainable(self) -> int:
        return sum(self._params.values())

    def __enter__(self) -> Meter:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self._handles = [torch.nn.modules.module.register_module_forward_hook(self._forward, with_kwargs=True),
                         register_optimizer_step_pre_hook(self._optimizer)]
        self._base = self._start_memory()
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.peak_bytes = max(0, self._peak_memory() - self._base)

    # ---------------------------------------------------------------- hooks
    def _is_backbone(self, module) -> bool:
        key = id(module)
        if key not in self._backbone:
            from transformers import PreTrainedModel

            self._backbone[key] = isinstance(module, PreTrainedModel) and module.base_model is module
        return self._backbone[key]

    def _forward(self, module, args, kwargs, output) -> None:
        if not self._is_backbone(module):
            return
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None and args and torch.is_tensor(args[0]):
            x = args[0]
        if x is None or x.dim() < 2:
            return
        n = int(x.shape[0] * x.shape[1])
        self.forward_tokens += n
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None and isinstance(output, tuple | list) and output and torch.is_tensor(output[0]):
            hidden = output[0]
        if hidden is not None and hidden.requires_grad:
            self.backward_tokens += n

    def _optimizer(self, optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                self._params[id(p)] = p.numel()

    # ---------------------------------------------------------------- memory
    def _start_memory(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.memory_source = "cuda"
            return torch.cuda.memory_allocated(self.device)
        gc.collect()
        _malloc_trim()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.memory_source = "rss"
            return _status_kb("VmRSS") * 1024
        except OSError:
            self.memory_source = "rss-max"
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _peak_memory(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device)
        if self.memory_source == "rss":
            return _status_kb("VmHWM") * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key}")


def _malloc_trim() -> None:
    """Hand freed heap memory back to the system (glibc), so the next peak starts from a true base."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
