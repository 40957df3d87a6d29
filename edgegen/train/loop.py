"""What the trainers (RF, ARC, VAE) share: process setup (single CPU process or torchrun + DDP), EMA, per-step
randomness, resumable state, writing the trained model in the official layout, and THE training loop (`fit`).

A trainer builds its models and optimizers and hands `fit` a `Trainer`: what to save and restore (`objects`),
one step (`step`, returning that step's numbers), the log record of a window (`record`), optional snapshots and
what to write at the end (`finish`). `fit` restores a saved state, runs the steps, stops on a non-finite number,
writes log.jsonl, reports progress and an ETA through `log`, snapshots, saves the state and finishes.

A run folder holds:

    state.safetensors  everything needed to resume: models, optimizers, schedulers, EMA, step, RNG state
                       (edgegen.train.store: tensors + JSON, never a pickle; an old state.pt is refused)
    log.jsonl          one {"step", losses..., "sec"} object per logged step
    snapshots/         step_NNNNNN.safetensors weights kept every `snapshot_every` steps (when asked for)
    model/             model_config.json + model.safetensors (official layout; RF / ARC: the EMA DiT, VAE: the
                       source model with the trained VAE): `edgegen export` and `edgegen train cache` input
    t5/                Hugging Face T5 folder (written when the source is a built-in random:* model)

Randomness is a pure function of (seed, rank, step): every step draws from its own generator, so a resumed run
repeats the straight run exactly; the global torch RNG state is saved too, for any code that uses it.

A run checks everything it can (settings, the folder, the state to resume, model, data) before it creates the
folder, and `new_folder` removes the folders it created when the run fails before writing anything into them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from edgegen.common import atomic_path
from edgegen.errors import EdgegenError
from edgegen.train import store
from edgegen.train.checks import check_dit

Log = Callable[[dict], None]


@dataclass(frozen=True)
class Run:
    """Where this process sits: rank / world size, and the device it trains on."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def start(*, distributed: bool) -> Run:
    """One process (on the first CUDA device when there is one, else the CPU), or (under torchrun) a process group:
    nccl when CUDA is available, else gloo."""
    if not distributed:
        return Run(device=torch.device("cuda", 0)) if torch.cuda.is_available() else Run()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if backend == "nccl":
        local = rank % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return Run(rank=rank, world=world, device=torch.device("cuda", local))
    return Run(rank=rank, world=world)


def finish(run: Run) -> None:
    if run.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, run: Run) -> nn.Module:
    """DistributedDataParallel over `module` when there is more than one process."""
    if run.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[run.device.index] if run.device.type == "cuda" else None)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator for one (seed, rank, step): all of a step's sampling draws from it."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step) % (1 << 63))


def randn(shape, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g).to(device)


def rand(shape, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=g).to(device)


# --- EMA -----------------------------------------------------------------------------------------------

def ema_decay(step: int, *, beta: float, power: float) -> float:
    """ema-pytorch's warmup: min(beta, 1 - (1 + step)^-power); 0 at step 0 (a copy), -> beta later."""
    return min(beta, 1.0 - (1.0 + step) ** -power)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, *, step: int, beta: float, power: float) -> None:
    d = ema_decay(step, beta=beta, power=power)
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - d)


def frozen_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).requires_grad_(False).eval()


def clip_and_step(params, optimizer: torch.optim.Optimizer, clip: float) -> float:
    """Clip the gradient norm (when clip > 0), step, zero; returns the pre-clip norm."""
    params = [p for p in params if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


# --- run folder ----------------------------------------------------------------------------------------

STATE_FILE, OLD_STATE_FILE = "state.safetensors", "state.pt"


@contextlib.contextmanager
def new_folder(path: Path):
    """Create `path` (and missing parents) for the body; when the body fails, remove again those of them it
    created that are still empty (a folder that existed before, or holds anything, stays)."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgegenError(f"cannot create folder {path}: {exc.strerror or exc}") from None
    try:
        yield path
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()  # only ever an empty folder
            except OSError:
                break
        raise


def save_state(run_dir: Path, state: dict) -> None:
    """Atomically write run_dir/state.safetensors."""
    store.save_tree(Path(run_dir) / STATE_FILE, {**state, "torch_rng": torch.get_rng_state()}, kind=store.STATE)


def load_state(run_dir: Path) -> dict | None:
    """The saved state in `run_dir` (None when there is none), checked (`restore` puts it into the run)."""
    path = Path(run_dir) / STATE_FILE
    old = Path(run_dir) / OLD_STATE_FILE
    if not path.is_file():
        if old.exists():
            raise EdgegenError(f"{old} is a run state in the old torch.save (pickle) format, which edgegen no longer "
                               "loads because unpickling can run code; start the run again in a new --out")
        return None
    state = store.load_tree(path, kind=store.STATE, what="training state",
                            remedy="start the run again in a new --out")
    ok = isinstance(state, dict) and isinstance(state.get("kind"), str) and isinstance(state.get("config"), dict) \
        and type(state.get("step")) is int and state["step"] >= 0 and isinstance(state.get("torch_rng"), torch.Tensor) \
        and state["torch_rng"].dtype == torch.uint8
    if not ok:
        raise EdgegenError(f"{path} is a damaged training state (kind, step, config or RNG state missing); "
                           "start the run again in a new --out")
    return state


def check_run_dir(run_dir: Path, *, resume: bool, kind: str, config: dict) -> dict | None:
    """The saved state to resume from, or None to start fresh; creates nothing.

    Refuses a path that is a file, overwriting an existing run unless `resume`, `resume` with nothing saved,
    and resuming a run of another kind or with another config (so `--resume` never silently changes
    hyperparameters or starts afresh).
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EdgegenError(f"--output {run_dir} is a file; give a folder for the run")
    state = load_state(run_dir) if run_dir.is_dir() else None
    if state is None:
        if resume:
            raise EdgegenError(f"--resume: there is no saved run in {run_dir} (no {STATE_FILE}); "
                               "drop --resume to start a new run there")
        return None
    if not resume:
        raise EdgegenError(f"{run_dir} already holds a run (step {state['step']}); pass --resume to continue it "
                           "or choose a new --out")
    if state["kind"] != kind:
        raise EdgegenError(f"{run_dir} holds a {state['kind']} run, not {kind}")
    if state["config"] != config:
        diff = sorted(k for k in set(config) | set(state["config"]) if config.get(k) != state["config"].get(k))
        raise EdgegenError(f"{run_dir}: the saved run used different settings ({', '.join(diff)}); "
                           "resume with the same options or choose a new --out")
    return state


def restore(state: dict, objects: dict, *, run_dir: Path) -> int:
    """Load state[key] into each object (a module, optimizer or scheduler) and the global torch RNG; returns the
    step to continue from. A state that does not fit is one error line."""
    try:
        for key, obj in objects.items():
            obj.load_state_dict(state[key])
        torch.set_rng_state(state["torch_rng"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EdgegenError(f"{Path(run_dir) / STATE_FILE} does not fit this run ({first}); "
                           "start the run again in a new --out") from None
    return state["step"]


def append_log(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def save_snapshot(run_dir: Path, step: int, tensors: dict[str, torch.Tensor]) -> Path:
    """run_dir/snapshots/step_NNNNNN.safetensors holding `tensors`, atomically."""
    from safetensors.torch import save_file

    path = Path(run_dir) / "snapshots" / f"step_{step:06d}.safetensors"
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    return path


# --- the loop --------------------------------------------------------------------------------------------

@dataclass
class Trainer:
    """What one kind of training supplies to `fit`.

    kind      "rf", "arc", "vae": the saved state's kind (a run resumes only as its own kind)
    settings  everything that must not change across --resume (saved in the state, compared on resume)
    objects   name -> module / optimizer / scheduler: saved in state.safetensors, restored on resume
    step      step(i) runs optimisation step i (0-based) and returns its numbers {name: float}; a non-finite
              one stops the run before that step is logged or saved
    record    record(done, numbers) -> the log record after `done` steps (fit adds "sec"); `numbers` are the
              last step's
    finish    writes the run's product (out/model ...) after the last step, on the main process
    snapshot  () -> {name: tensor} kept every `snapshot_every` steps after `snapshot_start` (None: never)
    """
    kind: str
    settings: dict
    objects: dict
    step: Callable[[int], dict]
    record: Callable[[int, dict], dict]
    finish: Callable[[], None]
    snapshot: Callable[[], dict] | None = None
    snapshot_start: int = 0


def fit(trainer: Trainer, *, run: Run, out: Path, state: dict | None, steps: int, save_every: int,
        log_every: int, snapshot_every: int = 0, log: Log | None = None) -> None:
    """Run `trainer` from its saved `state` (None: from step 0) up to `steps` in total, in the run folder `out`.

    Every `log_every` steps (and the last) the record goes to out/log.jsonl and, with "progress" and "eta"
    added, to `log` (the CLI prints it on stderr); every `save_every` steps (and the last) the state is saved
    atomically. A non-finite number is one error line: that step is never saved, the last saved state stays
    resumable, and a run that wrote nothing yet leaves no folder (`new_folder`)."""
    start = restore(state, trainer.objects, run_dir=out) if state is not None else 0
    with new_folder(out):  # the run's folder; removed again if nothing is written into it
        clock = time.perf_counter()
        for step in range(start, steps):
            numbers = trainer.step(step)
            done = step + 1
            check_finite(numbers, step=done, run_dir=out)
            if run.main and (done % log_every == 0 or done == steps):
                record = {**trainer.record(done, numbers), "sec": round(time.perf_counter() - clock, 2)}
                append_log(out, record)
                if log:
                    eta = record["sec"] / (done - start) * (steps - done)
                    log({**record, "progress": f"{done}/{steps}", "eta": clock_time(eta)})
            if run.main and trainer.snapshot and snapshot_every and done > trainer.snapshot_start \
                    and (done - trainer.snapshot_start) % snapshot_every == 0:
                save_snapshot(out, done, trainer.snapshot())
            if run.main and (done % save_every == 0 or done == steps):
                save_state(out, {"kind": trainer.kind, "config": trainer.settings, "step": done,
                                 **{k: obj.state_dict() for k, obj in trainer.objects.items()}})
        if run.main:
            trainer.finish()


def check_finite(numbers: dict, *, step: int, run_dir: Path) -> None:
    """One error line when a step's loss or gradient norm is NaN or inf (the run has diverged)."""
    bad = [k for k, v in numbers.items() if not math.isfinite(float(v))]
    if bad:
        saved = Path(run_dir) / STATE_FILE
        kept = f"{saved} (the last saved step) is kept" if saved.is_file() else "no state was saved"
        raise EdgegenError(f"training diverged at step {step}: {', '.join(f'{k} {float(numbers[k])}' for k in bad)}"
                           f"; {kept}: lower the learning rate or check the data")


def clock_time(seconds: float) -> str:
    """12s, 3m05s, 2h07m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def write_model(pipe, dit_state: dict, out_dir: Path, *, objective: str, scale: float | None = None) -> Path:
    """Official layout (model_config.json + model.safetensors) with `dit_state` as the DiT weights.

    `objective` is "rectified_flow" (a base model) or "rf_denoiser" (ARC: few-step ping-pong). `scale` (when
    given) is stored as pretransform.scale: the DiT works on latents / scale, the decoder multiplies it back.
    When the pipeline came from a built-in random:* model its T5 is written beside it as `../t5` (a HF folder).
    """
    raw = copy.deepcopy(pipe.raw_config)
    raw["model"]["diffusion"]["diffusion_objective"] = objective
    if scale is not None and scale != pipe.config.vae_scale:
        raw["model"]["pretransform"]["scale"] = float(scale)
    saved = {k: v.detach().clone() for k, v in pipe.dit.state_dict().items()}
    pipe.dit.load_state_dict({k: v.to("cpu") for k, v in dit_state.items()})
    try:
        pipe.save_official(Path(out_dir), raw_config=raw)
    finally:
        pipe.dit.load_state_dict(saved)
    if pipe.source.t5.startswith("random:"):
        write_t5_folder(pipe, Path(out_dir).parent / "t5")
    return Path(out_dir)


def write_t5_folder(pipe, out: Path) -> Path:
    """The pipeline's T5 as a Hugging Face folder: config.json, model.safetensors, spiece.model."""
    from safetensors.torch import save_file

    from edgegen.pipeline import ASSETS

    out.mkdir(parents=True, exist_ok=True)
    cfg = pipe.text_encoder.t5.config
    hf = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": cfg.vocab_size,
          "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
          "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
          "relative_attention_max_distance": cfg.relative_attention_max_distance,
          "layer_norm_epsilon": cfg.layer_norm_epsilon, "feed_forward_proj": cfg.feed_forward_proj,
          "dropout_rate": 0.0, "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1}
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    save_file({k: v.contiguous().clone() for k, v in pipe.text_encoder.t5.state_dict().items()},
              str(out / "model.safetensors"))
    shutil.copy(ASSETS / "spiece.model", out / "spiece.model")
    return out


def source_pipeline(model: str | Path, *, t5: str | Path | None, dit: dict | None = None, seed: int = 0):
    """The pipeline whose VAE/T5 the run uses. `dit` ({embed_dim, depth, num_heads}) replaces the DiT with a
    fresh seeded random one of that shape (a new base model); other components are kept."""
    from edgegen.config import ModelConfig
    from edgegen.pipeline import Pipeline, load_pipeline
    from edgegen.presets import randomize_

    if dit:
        check_dit(dit)
    pipe = load_pipeline(model, t5=t5)
    if not dit:
        return pipe
    raw = copy.deepcopy(pipe.raw_config)
    raw["model"]["diffusion"]["config"].update(dit)
    fresh = Pipeline(ModelConfig.from_dict(raw), pipe.text_encoder.t5.config, pipe.tokenizer, pipe.source)
    for name in ("text_encoder", "decoder", "encoder"):
        fresh.modules()[name].load_state_dict(pipe.modules()[name].state_dict())
    randomize_(fresh.dit, seed=seed)
    fresh.dit.transformer.rotary_pos_emb.refresh()
    fresh.raw_config = raw
    return fresh
