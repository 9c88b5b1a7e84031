"""A user's own diffusers pipeline: which class a folder or hub id holds, what its ``__call__`` takes, loading
it, the prompts, and one generation's call arguments.

Everything a command line asks of a pipeline is checked against the pipeline class's ``__call__`` signature
*before* any weights are read: the class comes from the folder's (or the hub's cached) ``model_index.json``.
A generation here is one pipeline call per prompt, its batch one image per seed (a generator each), so an
image depends only on its prompt and seed. Images come back as tensors in [0, 1], (N, C, H, W) or, for video,
(N, F, C, H, W), with the pipeline's final latents (its own latent space) where the pipeline lets a callback
see them.
"""

from __future__ import annotations

import inspect
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# option (CallOptions field / command-line flag) -> the pipeline __call__ argument it sets
CALL_ARGS = {"negative_prompt": "negative_prompt", "steps": "num_inference_steps", "guidance": "guidance_scale",
             "height": "height", "width": "width", "num_frames": "num_frames"}
# __call__ arguments ditcache sets itself on every generation
NEEDED = ("prompt", "num_inference_steps", "generator", "output_type")


@dataclass
class CallOptions:
    """What every generation of a pipeline is asked for (None: the pipeline's own default)."""

    steps: int = 50                      # num_inference_steps
    negative_prompt: str | None = None
    guidance: float | None = None        # guidance_scale
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None        # video pipelines only
    extra: dict = field(default_factory=dict)  # further __call__ arguments by name (--call-arg KEY=VALUE)

    def given(self) -> dict[str, object]:
        """The __call__ arguments these options set, by argument name."""
        out = {arg: getattr(self, name) for name, arg in CALL_ARGS.items() if getattr(self, name) is not None}
        return {**out, **self.extra}


# --------------------------------------------------------------------------- before loading


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def pipeline_class(path_or_id: str) -> type:
    """The diffusers pipeline class a local folder (``save_pretrained``) or a hub id holds, read from its
    ``model_index.json`` alone (no weights)."""
    import diffusers

    path = Path(path_or_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--pipeline {path_or_id!r} is a file; give a pipeline folder (written by "
                             "save_pretrained) or a hub id")
        index = path / "model_index.json"
        if not index.is_file():
            raise ValueError(f"--pipeline {path_or_id!r} is not a diffusers pipeline folder: it has no "
                             "model_index.json (save_pretrained writes one)")
        try:
            config = json.loads(index.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--pipeline {path_or_id!r}: unreadable model_index.json ({_one_line(e)})") from None
    elif path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") != 1:
        raise FileNotFoundError(f"--pipeline {path_or_id!r}: no such folder (and not a hub id 'owner/name')")
    else:
        try:
            config = diffusers.DiffusionPipeline.load_config(path_or_id)
        except Exception as e:
            from huggingface_hub import constants

            where = ("not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: HF_HUB_OFFLINE=0 downloads it"
                     if constants.HF_HUB_OFFLINE else _one_line(e))
            raise ValueError(f"--pipeline {path_or_id!r}: cannot read its model_index.json ({where})") from None
    name = config.get("_class_name") if isinstance(config, dict) else None
    cls = getattr(diffusers, name or "", None)
    if not isinstance(cls, type) or not hasattr(cls, "__call__"):
        raise ValueError(f"--pipeline {path_or_id!r}: model_index.json names {name!r}, which is not a pipeline "
                         f"class of diffusers {diffusers.__version__}")
    if "transformer" not in config:
        parts = ", ".join(k for k in config if not k.startswith("_"))
        raise ValueError(f"--pipeline {path_or_id!r}: {name} has no transformer (its components: {parts}); "
                         "ditcache caches diffusion transformers")
    return cls


def call_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The named arguments of ``cls.__call__`` (``self`` and ``**kwargs`` left out: options must name one)."""
    params = inspect.signature(cls.__call__).parameters
    return {k: p for k, p in params.items() if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _flag(arg: str) -> str:
    names = {a: n for n, a in CALL_ARGS.items()}
    return f"--{names[arg].replace('_', '-')}" if arg in names else f"--call-arg {arg}=..."


def check_call(cls: type, options: CallOptions) -> None:
    """Refuse options the pipeline class's ``__call__`` does not take, and arguments it needs that ditcache
    cannot give, naming the class's own call arguments."""
    params = call_parameters(cls)
    listing = ", ".join(params)
    for arg in NEEDED:
        if arg not in params:
            raise ValueError(f"{cls.__name__} takes no {arg!r}: ditcache runs text-to-image and text-to-video "
                             f"pipelines called with a prompt; its call arguments: {listing}")
    for arg in options.given():
        if arg not in params:
            raise ValueError(f"{cls.__name__} takes no {arg} ({_flag(arg)}); its call arguments: {listing}")
    required = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in NEEDED
                and k not in options.given()]
    if required:
        raise ValueError(f"{cls.__name__} needs {', '.join(required)}, which the options do not give (pass "
                         f"--call-arg NAME=VALUE); its call arguments: {listing}")


def parse_call_args(items: list[str] | None) -> dict:
    """``['use_resolution_binning=false', 'max_sequence_length=64']`` -> values read as JSON where they parse
    (numbers, true/false, null, lists), else as text."""
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--call-arg {item!r}: expected NAME=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def read_prompts(prompts: list[str] | None, path: str | None) -> list[str]:
    """``--prompt`` texts, then the lines of ``--prompts FILE`` (blank lines skipped)."""
    out = [p for p in (prompts or [])]
    if any(not p.strip() for p in out):
        raise ValueError("--prompt is empty")
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            raise ValueError(f"--prompts {path!r}: cannot read it ({reason})") from None
        file_prompts = [line.strip() for line in lines if line.strip()]
        if not file_prompts:
            raise ValueError(f"--prompts {path!r} holds no prompts (one a line; blank lines are skipped)")
        out += file_prompts
    if not out:
        raise ValueError("no prompts: give --prompt TEXT (repeatable) or --prompts FILE (one a line)")
    return out


def half_matmul_unusable(dtype: torch.dtype, device: str) -> bool:
    """Whether ``dtype`` matmuls on ``device`` are an order of magnitude slower than float32 (CPUs without
    half-precision units: measured here at ~1 GFLOP/s against ~95). A 192^3 product timed, best of 3."""
    if dtype == torch.float32 or torch.device(device).type != "cpu":
        return False

    def best(dt: torch.dtype) -> float:
        a = torch.randn(192, 192).to(dt)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        return min(times)

    return best(dtype) > 8 * best(torch.float32)


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``--dtype`` on ``--device``: float32 instead of a half precision this CPU cannot compute in (with a
    warning that says why)."""
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r}: expected one of {', '.join(DTYPES)}")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"--device {device!r}: {_one_line(e)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: this torch build sees no CUDA device")
    dtype = DTYPES[name]
    if half_matmul_unusable(dtype, device):
        warnings.warn(f"--dtype {name} on this CPU: its {name} matrix products run more than 8x slower than "
                      "float32 (no half-precision hardware), so the pipeline is loaded in float32 instead; "
                      "use --device cuda for half precision", stacklevel=2)
        return torch.float32
    return dtype


# --------------------------------------------------------------------------- loading


def load_pipeline(path_or_id: str, dtype: torch.dtype = torch.float32, device: str = "cpu",
                  variant: str | None = None):
    """``DiffusionPipeline.from_pretrained`` with dtype and variant, moved to ``device``, progress bars off."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(path_or_id, dtype=dtype, variant=variant)
    except Exception as e:
        raise ValueError(f"--pipeline {path_or_id!r} could not be loaded: {type(e).__name__}: {_one_line(e)}") \
            from None
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------- generations


def _to_images(out) -> torch.Tensor:
    """A pipeline output (output_type='pt') -> float32 on the CPU, (B, C, H, W) or (B, F, C, H, W), in [0, 1]."""
    x = out[0]
    if isinstance(x, (list, tuple)):
        x = torch.stack([torch.as_tensor(v) for v in x])
    return torch.as_tensor(x).detach().float().cpu().clamp(0, 1)


def latent_capture(pipe) -> tuple[dict, dict]:
    """(call kwargs that let the pipeline hand its latents to a callback after every step, the dict whose
    "latents" holds the last ones); empty kwargs when the pipeline has no such callback."""
    got: dict = {}
    params = call_parameters(type(pipe))
    if "callback_on_step_end" in params and "latents" in getattr(pipe, "_callback_tensor_inputs", ()):
        def on_step_end(p, i, t, kwargs):
            got["latents"] = kwargs["latents"]
            return {}
        return {"callback_on_step_end": on_step_end, "callback_on_step_end_tensor_inputs": ["latents"]}, got
    if "callback" in params and "callback_steps" in params:  # the older per-step callback (PixArt)
        def callback(i, t, latents):
            got["latents"] = latents
        return {"callback": callback, "callback_steps": 1}, got
    return {}, got


def generate(pipe, options: CallOptions, prompts: list[str], seeds: list[int]) -> tuple[torch.Tensor, list]:
    """Images for every (prompt, seed), prompt-major: one pipeline call per prompt, one image per seed.
    Returns (images in [0, 1], final latents per prompt as float32 CPU tensors, or None where not exposed)."""
    device = getattr(pipe, "device", torch.device("cpu"))
    images, latents = [], []
    for prompt in prompts:
        extra, got = latent_capture(pipe)
        generators = [torch.Generator(device).manual_seed(s) for s in seeds]
        out = pipe(prompt=[prompt] * len(seeds), generator=generators, output_type="pt",
                   **options.given(), **extra)
        images.append(_to_images(out))
        lat = got.get("latents")
        latents.append(lat.detach().float().cpu() if isinstance(lat, torch.Tensor) else None)
    return torch.cat(images), latents
