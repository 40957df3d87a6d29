"""Bench and parity-check a bundle on an Android phone over adb, with the native runner (android_demo/runner).

    dev = preflight(adb_path="adb", serial=None, bundle=bundle, runner_dir=Path("build/runner-android-arm64-portable"))
    result = device_bench(bundle, device=dev, runner_dir=..., iters=3)      # schema edgegen.bench/1, kind "device"
    report = device_parity(bundle, pipe, device=dev, runner_dir=...)       # schema edgegen.parity/1

Runner folders (`edgegen build-runner`), either kind, both backends:

    portable    edgegen-runner (sh launcher), bin/edgegen-runner, lib/ (glibc loader + every library, libLiteRt.so):
                target android-arm64-portable, needs no NDK; the default (build/runner-android-arm64-portable)
    ndk         edgegen-runner and its .so files side by side (target android-arm64, NDK build, for app builds);
                LiteRT bundles need libLiteRt.so for Android placed beside it

Device layout (content-addressed, so a second run pushes nothing that is already there):

    /data/local/tmp/edgegen/<Bundle.digest>/        manifest.json, the three artifacts, the tokenizer
    /data/local/tmp/edgegen/runner-<sha[:16]>/      the runner folder as built (ndk: run with LD_LIBRARY_PATH)
    /data/local/tmp/edgegen/work/                   noise.npy, out.wav, dump*/ (scratch)

`sync` compares each file's `sha256sum` on the device with the local one and pushes only what differs.
The runner is the same binary and flags as on the host; its last stdout line is the JSON timing report and
`--dump` writes the intermediates parity compares (see android_demo/README.md). This module only pushes, runs
and pulls: `edgegen.bench.bench_result` and `edgegen.parity.build_report` make the reports, as for a host run.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgegen.bench import ENCODER_STAGE, PROMPT, STAGES, Iteration, bench_result, int8_features, int8_layers
from edgegen.bundle import MANIFEST, Bundle, init_audio_shape
from edgegen.common import check_seconds, default_seconds, sha256_file
from edgegen.errors import EdgegenError
from edgegen.noise import gaussian_noise
from edgegen.xnnpack import precision_report

REMOTE_ROOT = "/data/local/tmp/edgegen"
RUNNER = "edgegen-runner"
ABI = "arm64-v8a"
FREE_MARGIN_BYTES = 64 << 20  # room for out.wav and the dumps
SHELL_TIMEOUT_S, COPY_TIMEOUT_S, RUN_TIMEOUT_S = 60, 900, 900
DEFAULT_RUNNER_DIR = Path("build/runner-android-arm64-portable")
LOADER = "lib/ld-linux-aarch64.so.1"
_BUILD_FIX = "build it with `edgegen build-runner --target android-arm64-portable -o {dir}` (or pass --runner DIR)"


@dataclass(frozen=True)
class Adb:
    """One device: `adb [-s serial] push|shell|pull`, each a subprocess with a timeout."""
    path: str
    serial: str | None = None

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
        cmd = [self.path, *(["-s", self.serial] if self.serial else []), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgegenError(f"`adb {' '.join(args)[:80]}` took over {timeout:.0f} s; check the device "
                               "(`adb devices`) and its connection") from None

    def _checked(self, args: list[str], *, timeout: float) -> str:
        proc = self._run(args, timeout=timeout)
        if proc.returncode != 0:
            why = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise EdgegenError(f"`adb {' '.join(args)[:80]}` failed (exit {proc.returncode}): "
                               f"{why[-1] if why else 'no output'}")
        return proc.stdout

    def push(self, local: Path, remote: str) -> None:
        self._checked(["push", str(local), remote], timeout=COPY_TIMEOUT_S)

    def pull(self, remote: str, local: Path) -> None:
        self._checked(["pull", remote, str(local)], timeout=COPY_TIMEOUT_S)

    def shell(self, command: str, *, timeout: float = SHELL_TIMEOUT_S) -> str:
        """stdout of `command` run by the device's sh; a non-zero exit raises (adb >= 7 passes it back)."""
        return self._checked(["shell", command], timeout=timeout)


@dataclass(frozen=True)
class Device:
    adb: Adb
    serial: str
    abi: str


def _bundle_files(bundle: Bundle) -> list[Path]:
    m = bundle.manifest
    names = [MANIFEST, m.tokenizer.file, *(a.file for a in m.artifacts.values())]
    return [bundle.root / n for n in names]


def is_portable(runner_dir: Path) -> bool:
    """A portable runner folder (bin/edgegen-runner beside lib/), as opposed to an NDK build's flat folder."""
    return (runner_dir / "bin" / RUNNER).is_file()


def _runner_files(runner_dir: Path) -> dict[str, list[Path]]:
    """{sub-folder ("" , "bin", "lib"): files} of the runner folder, as they go to the device."""
    if is_portable(runner_dir):
        return {"": [runner_dir / RUNNER], "bin": [runner_dir / "bin" / RUNNER],
                "lib": sorted(p for p in (runner_dir / "lib").glob("*") if p.is_file())}
    exe = runner_dir / RUNNER
    return {"": [exe, *sorted(p for p in runner_dir.glob("*.so*") if p.is_file())]} if exe.is_file() else {}


def check_runner_dir(runner_dir: Path, backend: str) -> None:
    """The runner folder can run `backend` bundles on an arm64 device, or one line that names the fix."""
    runner_dir = Path(runner_dir)
    exe = runner_dir / RUNNER
    if not (exe.is_file() and exe.stat().st_mode & 0o111):
        raise EdgegenError(f"no {RUNNER} executable in {runner_dir}; " + _BUILD_FIX.format(dir=runner_dir))
    if is_portable(runner_dir):
        if not (runner_dir / LOADER).is_file():
            raise EdgegenError(f"{runner_dir / LOADER} is missing: the portable runner starts through the loader it "
                               "carries; copy the whole folder or " + _BUILD_FIX.format(dir=runner_dir))
        lib = runner_dir / "lib" / "libLiteRt.so"
    else:
        lib = runner_dir / "libLiteRt.so"
    if backend == "litert" and not lib.is_file():
        raise EdgegenError(f"{runner_dir} has no libLiteRt.so, which LiteRT bundles need on the device; use the portable "
                           "runner (" + _BUILD_FIX.format(dir=DEFAULT_RUNNER_DIR) + ") or put ai-edge-litert's "
                           f"Android arm64 libLiteRt.so at {lib}")


def _list_devices(adb: Adb) -> dict[str, str]:
    """{serial: state} from `adb devices` ("device", "unauthorized", "offline", ...)."""
    out = adb._checked(["devices"], timeout=SHELL_TIMEOUT_S)
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    return {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2}


def _free_bytes(df_output: str) -> int:
    """Available bytes from `df -k PATH` (toybox and coreutils: ... 1K-blocks Used Available Use% Mounted-on)."""
    rows = [line.split() for line in df_output.strip().splitlines()[1:] if line.strip()]
    try:
        return int(rows[-1][-3]) * 1024
    except (IndexError, ValueError):
        raise EdgegenError(f"could not read the free space from `df -k`: {df_output.strip()[:120]!r}") from None


def preflight(*, adb_path: str, serial: str | None, bundle: Bundle, runner_dir: Path) -> Device:
    """The checks, in order, each failing with one line that names the fix: the runner folder, adb, the device,
    its ABI (64-bit arm), its free space."""
    check_runner_dir(runner_dir, bundle.backend)
    exe = shutil.which(adb_path)
    if exe is None:
        raise EdgegenError(f"adb not found ({adb_path!r}); install Android platform-tools and put adb on PATH, "
                           "or pass --adb-path PATH")
    devices = _list_devices(Adb(exe))
    ready = [s for s, state in devices.items() if state == "device"]
    if serial is not None and serial not in ready:
        state = f" is {devices[serial]}" if serial in devices else " is not connected"
        raise EdgegenError(f"device {serial}{state}; `adb devices` lists: "
                           f"{', '.join(f'{s} ({st})' for s, st in devices.items()) or 'nothing'}")
    if serial is None:
        if not ready:
            raise EdgegenError("no device: connect a phone with USB debugging on and accept its prompt "
                               "(`adb devices` must list it as `device`)")
        if len(ready) > 1:
            raise EdgegenError(f"{len(ready)} devices connected ({', '.join(ready)}); choose one with --serial S")
        serial = ready[0]
    adb = Adb(exe, serial)
    abi = adb.shell("getprop ro.product.cpu.abi").strip()
    if abi != ABI:
        abis = adb.shell("getprop ro.product.cpu.abilist").strip()
        if ABI in abis.split(","):
            abi = ABI  # a 64-bit device whose primary ABI is reported otherwise (e.g. a translated x86_64 image)
        elif abi.startswith("armeabi") or abi == "x86":
            raise EdgegenError(f"device {serial} is 32-bit only ({abis or abi}); the runner is built for {ABI}: "
                               "use a 64-bit arm phone or an arm64-v8a emulator image")
        else:
            raise EdgegenError(f"device {serial} has ABI {abi or '(none)'}; the runner is built for {ABI}: use an "
                               "arm64 phone or an arm64-v8a emulator image")
    runner_files = [p for files in _runner_files(runner_dir).values() for p in files]
    need = sum(p.stat().st_size for p in _bundle_files(bundle) + runner_files) + FREE_MARGIN_BYTES
    free = _free_bytes(adb.shell("df -k /data/local/tmp"))
    if free < need:
        raise EdgegenError(f"device {serial} has {free / 2**20:.0f} MiB free on /data/local/tmp, needs "
                           f"{need / 2**20:.0f} MiB; free space (e.g. `adb shell rm -r {REMOTE_ROOT}`)")
    return Device(adb=adb, serial=serial, abi=abi)


def sync(adb: Adb, local_files: list[Path], remote_dir: str) -> list[str]:
    """Push each file into `remote_dir` unless the device already has it with the same sha256; the names pushed."""
    adb.shell(f"mkdir -p {shlex.quote(remote_dir)}")
    # sha256sum prints "<hex>  <name>" per file it could read; missing files only go to stderr
    names = " ".join(shlex.quote(p.name) for p in local_files)
    out = adb.shell(f"cd {shlex.quote(remote_dir)} && sha256sum {names} 2>/dev/null; true")
    have = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            have[parts[1].strip()] = parts[0].lower()
    pushed = []
    for p in local_files:
        if have.get(p.name) != sha256_file(p):
            adb.push(p, f"{remote_dir}/{p.name}")
            pushed.append(p.name)
    return pushed


def _files_digest(files: list[Path]) -> str:
    return hashlib.sha256("".join(f"{p.name}:{sha256_file(p)}\n" for p in files).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Remote:
    bundle: str
    runner: str
    work: str
    portable: bool


def _install(device: Device, bundle: Bundle, runner_dir: Path) -> _Remote:
    groups = _runner_files(runner_dir)
    digest = _files_digest([p for sub in sorted(groups) for p in groups[sub]])
    r = _Remote(bundle=f"{REMOTE_ROOT}/{bundle.digest}", runner=f"{REMOTE_ROOT}/runner-{digest}",
                work=f"{REMOTE_ROOT}/work", portable=is_portable(runner_dir))
    sync(device.adb, _bundle_files(bundle), r.bundle)
    executables = []
    for sub, files in sorted(groups.items()):
        remote = f"{r.runner}/{sub}" if sub else r.runner
        pushed = sync(device.adb, files, remote)
        executables += [f"{remote}/{n}" for n in pushed if n == RUNNER or sub == "lib"]
    if executables:
        device.adb.shell("chmod 755 " + " ".join(shlex.quote(p) for p in executables))
    device.adb.shell(f"mkdir -p {shlex.quote(r.work)}")
    return r


def _run_runner(device: Device, r: _Remote, *, prompt: str, seconds: float, threads: int | None,
                extra: list[str]) -> dict:
    """One generation on the device; returns the runner's last-line JSON report."""
    args = ["--bundle", r.bundle, "--prompt", prompt, "--seconds", repr(float(seconds)),
            *(["--threads", str(threads)] if threads else []), *extra, "-o", f"{r.work}/out.wav"]
    exe = shlex.quote(r.runner + "/" + RUNNER)
    start = f"sh {exe}" if r.portable else f"LD_LIBRARY_PATH={shlex.quote(r.runner)} {exe}"
    cmd = f"cd {shlex.quote(r.work)} && {start} {' '.join(shlex.quote(a) for a in args)}"
    proc = device.adb._run(["shell", cmd], timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        why = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise EdgegenError(f"{RUNNER} failed on device {device.serial} (exit {proc.returncode}): "
                           f"{why[-1] if why else 'no output'}")
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise EdgegenError(f"{RUNNER} on device {device.serial} printed no JSON report; rebuild it with "
                           "`edgegen build-runner --target android-arm64-portable`") from None


def _push_init_audio(device: Device, r: "_Remote", bundle: Bundle, init_audio: tuple[int, np.ndarray]) -> str:
    """The init audio prepared here (the encoder's rate, channels, length) as a float32 WAV in the device's work
    folder; its path there. The runner then reads exactly what the host would have fed the encoder."""
    from edgegen.audio_io import write_wav
    from edgegen.init_audio import prepare_init_audio

    m = bundle.manifest
    _, channels, length = init_audio_shape(m, bundle.root)
    prepared, _ = prepare_init_audio(*init_audio, sample_rate=m.sample_rate, length=length, channels=channels)
    with tempfile.TemporaryDirectory(prefix="edgegen-adb-") as tmp:
        path = Path(tmp) / "init.wav"
        write_wav(path, prepared[0].numpy(), m.sample_rate)
        sync(device.adb, [path], r.work)
    return f"{r.work}/init.wav"


def device_bench(bundle: Bundle, *, device: Device, runner_dir: Path, iters: int = 3, warmup: int = 1,
                 threads: int | None = None, seconds: float | None = None, prompt: str = PROMPT,
                 init_audio: tuple[int, np.ndarray] | None = None, init_noise_level: float = 1.0,
                 on_iter=lambda i: None) -> dict:
    """`bench_bundle`'s result (edgegen.bench/1, kind "device") for runs on the phone; `seconds` and the init
    audio (audio-to-audio, encoder stage timed) as there."""
    m = bundle.manifest
    seconds = default_seconds(m.max_seconds) if seconds is None else seconds
    check_seconds(seconds, max_seconds=m.max_seconds, sample_rate=m.sample_rate, owner="this bundle")
    threads = threads or m.target.threads
    r = _install(device, bundle, runner_dir)
    extra = ["--seed", "0"]
    if init_audio is not None:
        extra += ["--init-audio", _push_init_audio(device, r, bundle, init_audio),
                  "--init-noise-level", repr(float(init_noise_level))]
    runs = []
    for i in range(warmup + iters):
        rep = _run_runner(device, r, prompt=prompt, seconds=seconds, threads=threads, extra=extra)
        if i >= warmup:
            runs.append(rep)
        on_iter(i)
    model = device.adb.shell("getprop ro.product.model").strip()
    cpus = device.adb.shell("nproc").strip()
    cpuinfo = device.adb.shell("cat /proc/cpuinfo")
    features = int8_features(cpuinfo)
    a2a = {"init_noise_level": init_noise_level} if init_audio is not None else {}
    if "decoded_latent_frames" in runs[0]:  # runners from before schema 3 do not report it
        a2a["decoded_latent_frames"] = runs[0]["decoded_latent_frames"]
    return bench_result([_iteration(x) for x in runs], warmup=warmup, kind="device", backend=m.backend,
                        recipe=m.recipe.name, target=m.target.name, bundle=str(bundle.root),
                        threads=runs[0]["threads"], **a2a, machine=device.abi, processor=model,
                        cpus=int(cpus) if cpus.isdigit() else None, int8_features=features,
                        int8_layers=int8_layers(m),
                        precision=precision_report(m, cpuinfo),
                        device={"serial": device.serial, "abi": device.abi, "model": model})


def _iteration(rep: dict) -> Iteration:
    """The runner's JSON report (android_demo/README.md) as one timed run; each run is its own process."""
    stages = {k: rep["stages"][k] for k in ("load", ENCODER_STAGE, *STAGES) if k in rep["stages"]}
    return Iteration(e2e_s=rep["e2e_s"], stages=stages,
                     dit_steps=list(rep["dit_step_s"]), first_audio_s=rep["time_to_first_audio_s"],
                     frames=rep["frames"], sample_rate=rep["sample_rate"], peak_rss_mb=rep["peak_rss_mb"])


def _pull_dump(device: Device, remote_dir: str, names: list[str], local_dir: Path) -> dict[str, np.ndarray]:
    local_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        device.adb.pull(f"{remote_dir}/{n}.npy", local_dir / f"{n}.npy")
    return {n: np.load(local_dir / f"{n}.npy", allow_pickle=False) for n in names}


def device_parity(bundle: Bundle, pipe, *, device: Device, runner_dir: Path, seed: int = 0,
                  seconds: float | None = None, threads: int | None = None,
                  on_stage: Callable[[str], None] = lambda s: None) -> dict:
    """`check_parity`'s report (edgegen.parity/1) for the runner on the phone, from its --dump outputs.

    Every prompt of parity.PROMPTS runs once on the device with the reference noise gaussian_noise(seed,
    (steps, 64, T)) injected; the dumps become `parity.StageOutputs` (the first prompt's run is the chain:
    conditioning, the latents after every step, the audio) and `parity.build_report` compares and gates them.
    """
    from edgegen.parity import PROMPTS, PromptOutputs, StageOutputs, build_report, check_source, parity_seconds

    m = bundle.manifest
    check_source(m, pipe)
    seconds = parity_seconds(seconds, pipe=pipe, manifest=m)
    steps = m.sampler.steps
    latent_shape = m.latent_shape  # (64, T)
    noise = gaussian_noise(seed, (steps, *latent_shape))  # (steps, 64, T)
    r = _install(device, bundle, runner_dir)
    cond_names = ["token_ids", "attention_mask", "cross_attn_cond", "global_cond"]
    with tempfile.TemporaryDirectory(prefix="edgegen-adb-") as tmp:
        np.save(Path(tmp) / "noise.npy", noise)
        sync(device.adb, [Path(tmp) / "noise.npy"], r.work)
        dumps = []
        for i, prompt in enumerate(PROMPTS):
            on_stage(f"device run {i + 1}/{len(PROMPTS)}")
            _run_runner(device, r, prompt=prompt, seconds=seconds, threads=threads,
                        extra=["--noise", f"{r.work}/noise.npy", "--truncate-prompt", "--dump", f"{r.work}/dump{i}"])
            names = cond_names + ([f"latents_step{k}" for k in range(steps)] + ["audio"] if i == 0 else [])
            dumps.append(_pull_dump(device, f"{r.work}/dump{i}", names, Path(tmp) / f"dump{i}"))
        encoder = _device_audio_to_audio(device, r, bundle, Path(tmp), prompt=PROMPTS[0], seconds=seconds, seed=seed,
                                         threads=threads, on_stage=on_stage) if "encoder" in m.artifacts else None
    on_stage("eager reference")
    d = dumps[0]
    outputs = StageOutputs(
        seconds=seconds, seed=seed, noise=noise,
        prompts=[PromptOutputs(p, x["token_ids"], x["attention_mask"], x["cross_attn_cond"], x["global_cond"])
                 for p, x in zip(PROMPTS, dumps)],
        latents=[d[f"latents_step{k}"] for k in range(steps)], audio=d["audio"], encoder=encoder)
    return build_report(outputs, pipe, m, bundle=str(bundle.root))


def _device_audio_to_audio(device: Device, r: _Remote, bundle: Bundle, tmp: Path, *, prompt: str, seconds: float,
                           seed: int, threads: int | None, on_stage: Callable[[str], None]):
    """The audio-to-audio rows' device half: parity's init signal and VAE noise pushed, one generation at S = 0.5
    with the chain noise already on the device, the init latents and audio pulled from its --dump."""
    from edgegen.parity import A2A_NOISE_LEVEL, EncoderOutputs, parity_init_audio
    from edgegen.sampler import init_vae_noise

    m = bundle.manifest
    init = parity_init_audio(m.sample_rate, init_audio_shape(m, bundle.root)[-1])
    steps, (channels, length) = m.sampler.steps, m.latent_shape
    vae = init_vae_noise(None, seed=seed, steps=steps, channels=channels, length=length)
    np.save(tmp / "vae_noise.npy", vae)
    on_stage("device run: audio-to-audio")
    wav = _push_init_audio(device, r, bundle, (m.sample_rate, init))
    sync(device.adb, [tmp / "vae_noise.npy"], r.work)
    _run_runner(device, r, prompt=prompt, seconds=seconds, threads=threads,
                extra=["--noise", f"{r.work}/noise.npy", "--vae-noise", f"{r.work}/vae_noise.npy", "--init-audio", wav,
                       "--init-noise-level", repr(A2A_NOISE_LEVEL), "--truncate-prompt", "--dump", f"{r.work}/dump_a2a"])
    d = _pull_dump(device, f"{r.work}/dump_a2a", ["init_latents", "audio"], tmp / "dump_a2a")
    return EncoderOutputs(init_audio=init[None], vae_noise=vae, init_latents=d["init_latents"], level=A2A_NOISE_LEVEL,
                          audio=d["audio"])
