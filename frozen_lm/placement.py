"""Where a model's weights go: device, dtype, accelerate's big-model placement, 8/4-bit loading.

`FrozenLM.load` turns its options into a `Placement` (every mistake a one-line UserError before
any weight is read) and the Placement into `from_pretrained`'s keyword arguments:
- device + dtype: the weights load in that dtype and move to the device (several processes under
  torchrun: each on its own GPU, cuda:LOCAL_RANK);
- device_map ('auto', 'balanced', 'balanced_low_0', 'sequential') with max_memory: accelerate
  splits one copy of the model over the GPUs (then CPU memory) of the machine;
- quantize ('8bit' / '4bit'): bitsandbytes quantizes the linear layers as they load (CUDA only);
  the input embeddings stay in dtype, so gradients with respect to them still flow.
Trainable prompt, prefix and theta_d tensors stay float32 whatever the dtype (their users cast at use).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch

from frozen_lm import distributed
from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)

DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
QUANTIZE = ("8bit", "4bit")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SCALE_PIP = "pip install 'accelerate>=0.30'  (or: pip install 'autoprompt-suite[scale]')"
QUANT_PIP = "pip install 'bitsandbytes>=0.43'  (or: pip install 'autoprompt-suite[quant]')"


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    device_map: str | None = None
    max_memory: dict | None = None
    quantize: str | None = None

    @property
    def dispatched(self) -> bool:
        """Whether from_pretrained places the weights itself (no `.to(device)` afterwards)."""
        return self.device_map is not None or self.quantize is not None

    def from_pretrained_kwargs(self) -> dict:
        kwargs: dict = {"dtype": self.dtype}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
            if self.max_memory:
                kwargs["max_memory"] = self.max_memory
        elif self.quantize is not None:
            kwargs["device_map"] = {"": self.device}
        if self.quantize is not None:
            kwargs["quantization_config"] = quantization_config(self.quantize, self.dtype)
        return kwargs

    def describe(self) -> str:
        parts = [f"device_map={self.device_map}"] if self.device_map else []
        return " ".join(parts + ([f"quantize={self.quantize}"] if self.quantize else [])) or f"device={self.device}"


def quantization_config(kind: str, dtype: torch.dtype):
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)


def parse_max_memory(text: str | dict | None) -> dict | None:
    """'0=20GiB,1=20GiB,cpu=64GiB' -> {0: '20GiB', 1: '20GiB', 'cpu': '64GiB'} (a dict passes through)."""
    if text is None or isinstance(text, dict):
        return text
    out: dict = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        key, sep, size = part.partition("=")
        key, size = key.strip(), size.strip()
        if not sep or not size or not (key.isdigit() or key in ("cpu", "disk", "mps")):
            raise UserError(f"FrozenLM.max_memory {text!r}: give DEVICE=SIZE pairs, e.g. '0=20GiB,1=20GiB,cpu=64GiB' "
                            "(DEVICE a GPU index or cpu)")
        out[int(key) if key.isdigit() else key] = size
    return out or None


def choose_device(device: str | None) -> torch.device:
    """'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N', 'mps'; UserError for one this machine lacks."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"FrozenLM.device {device}: this machine has no CUDA GPU (torch {torch.__version__}); use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"FrozenLM.device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserError(f"FrozenLM.device {device}: MPS is not available here; use 'cpu' or 'auto'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"FrozenLM.device {device}: {dev.type} is not supported here; use auto, cpu, cuda or cuda:N")
    return dev


def choose_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype in (None, "auto"):
        return torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}'; choose one of: auto, {', '.join(DTYPES)}")
    if DTYPES[dtype] != torch.float32 and device.type == "cpu":
        logger.warning("%s on CPU is slow and inexact; float32 is recommended there", dtype)
    return DTYPES[dtype]


def make_placement(device: str | None, dtype: str | None, device_map: str | None = None,
                   max_memory: str | dict | None = None, quantize: str | None = None) -> Placement:
    """A checked Placement for FrozenLM.load's options (UserError for a combination that cannot work)."""
    memory = parse_max_memory(max_memory)
    if memory and device_map is None:
        raise UserError("FrozenLM.max_memory bounds what FrozenLM.device_map puts on each device; add FrozenLM.device_map 'auto'")
    if device_map is not None:
        _check_device_map(device_map, device)
    if quantize is not None:
        _check_quantize(quantize)
    distributed.init()
    if distributed.world_size() > 1 and device in (None, "auto", "cuda") and torch.cuda.is_available():
        dev = distributed.local_device()  # one GPU per process
    else:
        dev = choose_device(device)
    if quantize is not None and dev.type != "cuda":
        raise UserError(f"FrozenLM.quantize {quantize} runs on CUDA GPUs only; leave FrozenLM.device out (it is {device!r})")
    return Placement(dev, choose_dtype(dtype, dev), device_map, memory, quantize)


def _check_device_map(device_map: str, device: str | None) -> None:
    if device_map not in DEVICE_MAPS:
        raise UserError(f"FrozenLM.device_map {device_map!r}: choose one of {', '.join(DEVICE_MAPS)}")
    if device not in (None, "auto"):
        raise UserError(f"FrozenLM.device_map {device_map} places the weights itself; leave FrozenLM.device out (it is {device!r})")
    if distributed.env_world_size() > 1:
        raise UserError(f"FrozenLM.device_map {device_map} spreads one copy of the model over this machine's GPUs, so it "
                        "cannot run in several processes; run one process (no torchrun), or fit the model on one "
                        "GPU per process (FrozenLM.dtype bfloat16, FrozenLM.quantize 4bit)")
    if importlib.util.find_spec("accelerate") is None:
        raise UserError(f"FrozenLM.device_map needs the accelerate package; install it with: {SCALE_PIP}")


def _check_quantize(quantize: str) -> None:
    if quantize not in QUANTIZE:
        raise UserError(f"FrozenLM.quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
    if not torch.cuda.is_available():
        raise UserError(f"FrozenLM.quantize {quantize} loads the weights with bitsandbytes, which needs a CUDA GPU; this "
                        f"machine has none (torch {torch.__version__}); use FrozenLM.dtype bfloat16 instead")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"FrozenLM.quantize {quantize} needs the bitsandbytes package; install it with: {QUANT_PIP}")
    if importlib.util.find_spec("accelerate") is None:
        raise UserError(f"FrozenLM.quantize {quantize} needs the accelerate package; install it with: {SCALE_PIP}")


def model_devices(model) -> set[torch.device]:
    """The devices that hold the model's weights (several when accelerate spread it; 'meta' for
    weights offloaded to disk)."""
    placed = set((getattr(model, "hf_device_map", None) or {}).values())
    devices = {torch.device("cuda", d) if isinstance(d, int) else torch.device("meta" if d == "disk" else d)
               for d in placed}
    return devices or {p.device for p in model.parameters()}


def offloaded(model) -> bool:
    """Whether accelerate keeps some weights off the GPUs (CPU or disk) and brings them in per layer."""
    placed = set((getattr(model, "hf_device_map", None) or {}).values())
    return "disk" in placed or ("cpu" in placed and len(placed) > 1)


def layer_devices(model) -> dict[int, torch.device]:
    """{layer index: device of its attention weights}, for key/values that must sit beside each layer
    (transformers' attention modules know their `layer_idx`)."""
    out = {}
    for module in model.modules():
        idx = getattr(module, "layer_idx", None)
        if isinstance(idx, int) and idx not in out:
            param = next(module.parameters(), None)
            if param is not None:
                out[idx] = param.device
    return out


def quantized(model) -> str | None:
    """'8bit' / '4bit' when bitsandbytes quantized the model's weights, else None."""
    config = getattr(getattr(model, "config", None), "quantization_config", None)
    if config is None:
        return None
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if get("load_in_4bit", False):
        return "4bit"
    if get("load_in_8bit", False):
        return "8bit"
    return str(get("quant_method", "quantized"))
