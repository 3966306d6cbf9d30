"""Memory estimates for projections, and the refusal of ones that would not fit."""

from __future__ import annotations

import logging

import torch

from frozen_lm.errors import UserError
from intrinsic_dim.projections import PROJECTIONS, memory_bytes

logger = logging.getLogger(__name__)
GIB = 1024**3


def free_bytes(device: torch.device) -> int:
    """Free memory on `device`: CUDA free memory, else the system's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].strip().split()[0]) * 1024


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def limit_bytes(limit_gib: float | None, device: torch.device) -> int:
    """The memory a projection may take: `limit_gib`, or a quarter of the free memory."""
    return int(limit_gib * GIB) if limit_gib is not None else free_bytes(device) // 4


def check_projection(kind: str, D: int, d: int, limit: int) -> int:
    """Log the estimate; UserError when it exceeds `limit` bytes. Returns the estimate."""
    need = memory_bytes(kind, D, d)
    logger.info("projection %s: D=%d, d=%d, about %s (limit %s)", kind, D, d, human(need), human(limit))
    if need > limit:
        alt = "" if kind == "fastfood" else (
            f"; use IntrinsicDimConfig.projection fastfood, which needs about {human(memory_bytes('fastfood', D, d))}")
        raise UserError(f"the {kind} projection for D={D:,} and d={d:,} needs about {human(need)}, over the limit "
                        f"of {human(limit)} (IntrinsicDimConfig.max_projection_gib, default a quarter of free memory){alt}")
    return need


__all__ = ["PROJECTIONS", "check_projection", "free_bytes", "human", "limit_bytes"]
