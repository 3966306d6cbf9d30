"""Several processes, one run: data parallelism over torch.distributed (`torchrun`, `accelerate launch`).

Every process runs the same program on the same data with the same seeds and so makes the same
random choices; what differs is which examples of a batch each one computes. Sums over examples
(gradients weighted by each process's share, scores, correct counts) are all-reduced, so every
process sees the numbers one process would have computed (up to float rounding) and takes the
same decision. Process 0 alone writes artifacts and shows progress.

In one process every helper here is a no-op. Under torchrun (WORLD_SIZE > 1 in the environment)
the first helper called joins the process group: gloo on CPU, nccl on CUDA (each process on GPU
LOCAL_RANK); FROZEN_LM_DIST_BACKEND overrides the backend (e.g. gloo for several processes on one
GPU). A process group set up by the caller (tests: gloo over a file://) is used as it is.
"""

from __future__ import annotations

import atexit
import logging
import os

import torch

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
BACKEND_ENV = "FROZEN_LM_DIST_BACKEND"


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def env_world_size() -> int:
    """Processes the launcher started (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def local_device() -> torch.device:
    """This process's GPU: cuda:LOCAL_RANK (modulo the GPUs there are); cpu without CUDA."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank() % torch.cuda.device_count())


def init() -> bool:
    """Join the process group the launcher describes (idempotent); True when running distributed."""
    dist = _dist()
    if dist is None:
        return False
    if dist.is_initialized():
        return True
    if env_world_size() <= 1:
        return False
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in ("gloo", "nccl"):
        raise UserError(f"{BACKEND_ENV}={backend}: choose gloo or nccl")
    if backend == "nccl":
        torch.cuda.set_device(local_device())
    dist.init_process_group(backend)
    atexit.register(_finish)
    if dist.get_rank() == 0:
        logger.info("%d processes (%s backend)", dist.get_world_size(), backend)
    return True


def _finish() -> None:
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in this run (1 when not distributed)."""
    return _dist().get_world_size() if init() else 1


def rank() -> int:
    return _dist().get_rank() if init() else 0


def is_main() -> bool:
    """Whether this process writes artifacts, logs at INFO and shows progress bars (rank 0)."""
    return rank() == 0


def shard(index: torch.Tensor) -> torch.Tensor:
    """This process's share of a batch's example indices (N,): contiguous pieces whose sizes differ
    by at most one, the same split on every process; all of them in one process (may be empty)."""
    n = world_size()
    return index if n == 1 else index.tensor_split(n)[rank()]


def shard_rows(rows):
    """This process's share of the examples of encoded rows (a `frozen_lm.encode.Rows`)."""
    if world_size() == 1:
        return rows
    return rows.subset(shard(torch.arange(rows.n_examples)))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the processes, in place (and returned); nothing to do in one process.

    The backend's device is used for the transfer (nccl: this process's GPU; gloo: the CPU)."""
    if world_size() == 1:
        return tensor
    dist = _dist()
    want = local_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    work = tensor if tensor.device == want else tensor.to(want)
    dist.all_reduce(work)
    if work is not tensor:
        tensor.copy_(work)
    return tensor


def all_reduce_grads(params) -> None:
    """Sum the gradients of `params` over the processes, one flat transfer per dtype (a gradient
    missing here counts as zeros; one missing everywhere stays None, as in one process)."""
    params = list(params)
    if world_size() == 1 or not params:
        return
    has = all_reduce_sum(torch.tensor([float(p.grad is not None) for p in params], dtype=torch.float64))
    params = [p for p, n in zip(params, has.tolist()) if n > 0]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for dtype in dict.fromkeys(p.grad.dtype for p in params):
        group = [p for p in params if p.grad.dtype == dtype]
        flat = all_reduce_sum(torch.cat([p.grad.reshape(-1) for p in group]))
        for p, piece in zip(group, flat.split([p.numel() for p in group])):
            p.grad.copy_(piece.view_as(p.grad))


def on_main(fn, *args, **kwargs):
    """fn(*args, **kwargs) on process 0 only (e.g. preparing the output folder); the others return
    None, or raise its error (a UserError as the same one-line UserError)."""
    if world_size() == 1:
        return fn(*args, **kwargs)
    value, box = None, [None]
    if is_main():
        try:
            value = fn(*args, **kwargs)
        except Exception as e:
            box = [("user" if isinstance(e, UserError) else "error", str(e))]
            _dist().broadcast_object_list(box, src=0)
            raise
    _dist().broadcast_object_list(box, src=0)
    if box[0] is not None:
        kind, message = box[0]
        raise UserError(message) if kind == "user" else RuntimeError(f"process 0 failed: {message}")
    return value
