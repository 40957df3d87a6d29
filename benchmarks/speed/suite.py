"""The benchmark suite: eager PyTorch vs every backend x recipe, side by side on the same weights, one session.

    .venv/bin/python -m benchmarks.speed.suite --model random:sao-small --out out/suite \
        --configs executorch:int8,executorch:mobile,litert:int8,litert:mobile --size-configs litert:fp32 --iters 3
    .venv/bin/python -m benchmarks.speed.suite --model random:tiny --out out/suite-tiny      # a quick smoke run

For each configuration it exports a bundle (or reuses `--out/<model>-<backend>-<recipe>` when its manifest
matches), then, each in its own process so peak RSS is that run's alone: `edgegen bench` (per-stage medians,
end to end, RTF, time to first audio, peak RSS) and `edgegen parity --json` (quality beside speed). The eager
reference is timed the same way (`edgegen bench --model`). "arm" is Arm's configuration: the `mobile` recipe
(T5 fp32, DiT int8 dynamic, decoder fp16 where the target computes in fp16 — fp32 on this x86 host).
A configuration `backend:recipe:low-memory` times the same bundle with `edgegen bench --low-memory` (each
artifact loaded for its stage only); its parity is the resident row's (same files), so it is not re-run (nor is
any parity report newer than its bundle's manifest). Right after each resident bench,
`benchmarks/speed/bare_dit.py --against-harness` checks the harness's DiT step against bare runtime calls of the same
artifact (no edgegen code on the path; target <= 1.10x), interleaved in one process round by round (one generation
through the harness, then 8 bare calls, alternating), so this VM's minute-to-minute drift does not enter the ratio
as it does between two processes. Before a LiteRT bundle's bench, one short `edgegen run` fills
XNNPACK's weight cache (default folder), so its row is the steady state of every run after the first.
`--arm litert` adds the row of Arm's recipe built with Arm's own conversion calls (`benchmarks/speed/arm_recipe.py`:
T5 fp32, DiT int8 via litert-torch's dynamic recipe, the WHOLE-sequence fp32 decoder) timed as bare runtime calls
in its own process, in the same session as edgegen's rows; then each LiteRT bundle is timed against it again with
generations interleaved in one process (`benchmarks/speed/vs_arm.py`), which gives the verdict of the "x Arm" targets
(rows timed minutes apart carry the VM's drift into their ratio).
Each row carries decoder time, end to end, bundle size, per-stage SQNR and the multi-resolution STFT distance of the
decoder and of the end-to-end audio; the machine line names the CPU's int8 features (VNNI / AVX-512 / dotprod /
i8mm, or none), since int8 speed depends on them. A `fast` row is checked against the fp32 row of its backend
(decoder >= 1.5x faster where the CPU has int8 dot products) and against Arm's recipe (<= 0.5x end to end).
Writes `results.json`, `RESULTS.md` (tables + machine + method) and `stages.png` into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

from edgegen.bench import describe_int8, int8_dot_product
from edgegen.presets import random_checkpoint_id, random_config_sha256

CLI = [sys.executable, "-m", "edgegen.cli"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def _bundle(model: str, backend: str, recipe: str, out: Path) -> Path:
    path = out / f"{model.replace(':', '-')}-{backend}-{recipe}"
    manifest = path / "manifest.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        # a bundle from before the fp16 T5 default, or of an older random init or preset, is exported again
        same_weights = not model.startswith("random:") or (
            m["source"].get("checkpoint_sha256") == random_checkpoint_id()
            and m["source"].get("config_sha256") == random_config_sha256(model[len("random:"):]))
        if (m["backend"], m["recipe"]["name"], m["source"]["model"], m["source"].get("t5_precision")) == \
                (backend, recipe, model, "fp16") and same_weights:
            return path
    res = _run(["export", "-m", model, "-t", f"host-{backend}", "-r", recipe, "-o", str(path), "--force"])
    if res.returncode != 0:
        raise SystemExit(f"export {backend}/{recipe} failed: {res.stderr.strip().splitlines()[-1]}")
    return path


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _arm_row(model: str, backend: str, out: Path, iters: int) -> dict:
    """Arm's recipe (benchmarks/speed/arm_recipe.py) in its own process: exported once into out/arm-<backend>, timed as
    bare runtime calls; returned in the shape of a bench row."""
    if backend != "litert":
        raise SystemExit(f"--arm {backend}: only litert is built the way Arm builds it here")
    _say(f"arm recipe ({backend}): export (or reuse) and time")
    res = subprocess.run([sys.executable, "-m", "benchmarks.speed.arm_recipe", "--model", model,
                          "--out", str(out / f"arm-{backend}"), "--iters", str(iters), "--json"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"arm recipe failed: {res.stderr[-500:]}")
    a = _last_json(res.stdout)
    audio_s = 10.0  # arm_recipe.py asks for 10 s (seconds_total) and decodes the whole sequence
    bench = {"stages": {"load": a["load_s"], **a["stages"]}, "dit_step_s": a["dit_step_s"], "e2e_s": a["e2e_s"],
             "rtf": a["e2e_s"] / audio_s, "time_to_first_audio_s": a["time_to_first_audio_s"],
             "peak_rss_mb": a["peak_rss_mb"], "decoded_latent_frames": a["decoded_latent_frames"], "raw": a}
    return {"config": f"{backend} arm recipe (bare calls)", "bench": bench, "size_mb": a["size_mb"], "parity": None}


def measure(model: str, configs: list[tuple[str, str]], out: Path, iters: int, warmup: int, seconds: float,
            size_configs: list[tuple[str, str]] = (), arm: tuple[str, ...] = ()) -> dict:
    rows = []
    _say(f"eager {model}: bench")
    secs = ["-s", str(seconds)] if seconds else []  # bench's default: the model's maximum (beyond it: refused)
    res = _run(["bench", "-m", model, "--iters", str(iters), "--warmup", str(warmup), *secs])
    if res.returncode != 0:
        raise SystemExit(f"eager bench failed: {res.stderr[-500:]}")
    eager = _last_json(res.stdout)
    rows.append({"config": "eager fp32", "bench": eager, "size_mb": None, "parity": None})
    for backend, recipe, *mode in configs:
        low = mode == ["low-memory"]
        if mode and not low:
            raise SystemExit(f"unknown mode {mode[0]!r} in {backend}:{recipe}:{mode[0]} (only low-memory)")
        _say(f"{backend} {recipe}: export (or reuse)")
        path = _bundle(model, backend, recipe, out)
        if backend == "litert":  # fill XNNPACK's weight cache first: the timed rows are every run after the first
            _say(f"{backend} {recipe}: weight cache")
            warm = _run(["run", "-b", str(path), "-p", "warm-up", "-s", "0.5", "-o", str(out / "warm-cache.wav")])
            if warm.returncode != 0:
                raise SystemExit(f"run {path} failed: {warm.stderr[-500:]}")
        _say(f"{backend} {recipe}{' low-memory' if low else ''}: bench")
        res = _run(["bench", "-b", str(path), "--iters", str(iters), "--warmup", str(warmup), *secs]
                   + (["--low-memory"] if low else []))
        if res.returncode != 0:
            raise SystemExit(f"bench {path} failed: {res.stderr[-500:]}")
        bench = _last_json(res.stdout)
        bare = None
        if not low:  # right after the bench: the harness's DiT step against bare calls, interleaved
            _say(f"{backend} {recipe}: harness vs bare DiT calls, interleaved")
            bres = subprocess.run([sys.executable, "-m", "benchmarks.speed.bare_dit", str(path),
                                   "--threads", str(bench["threads"]), "--calls", "8", "--against-harness",
                                   "--rounds", str(max(iters, 2)), *(["--seconds", str(seconds)] if seconds else []),
                                   "--json"], capture_output=True, text=True)
            if bres.returncode != 0:
                raise SystemExit(f"bare DiT {path} failed: {bres.stderr[-500:]}")
            bare = _last_json(bres.stdout)
        par_path = out / f"parity-{backend}-{recipe}.json"
        par_exit = None
        # parity depends on the bundle's files only: a report newer than the bundle's manifest is reused
        fresh = par_path.is_file() and par_path.stat().st_mtime > (path / "manifest.json").stat().st_mtime
        if not fresh:
            _say(f"{backend} {recipe}: parity")
            par_exit = _run(["parity", "-b", str(path), "-m", model, "--json", str(par_path)]).returncode
        parity = json.loads(par_path.read_text()) if par_path.is_file() else None
        label = f"{backend} {recipe}" + (" (arm)" if recipe == "mobile" else "") + (" low-memory" if low else "")
        rows.append({"config": label, "bundle": str(path), "bench": bench, "size_mb": _size_mb(path), "bare_dit": bare,
                     "parity": parity, "parity_exit": par_exit})
    for backend in arm:
        rows.append(_arm_row(model, backend, out, iters))
        for r in rows:  # the ratio to Arm's recipe again, generations interleaved in one process (vs_arm.py)
            if r["config"].startswith(f"{backend} ") and r.get("bare_dit") and "(arm)" not in r["config"]:
                _say(f"{r['config']}: against Arm's recipe, interleaved")
                vres = subprocess.run([sys.executable, "-m", "benchmarks.speed.vs_arm", r["bundle"],
                                       "--arm", str(out / f"arm-{backend}"), "--rounds", str(max(iters, 2)),
                                       "--threads", str(r["bench"]["threads"]),
                                       *(["--seconds", str(seconds)] if seconds else []), "--json"],
                                      capture_output=True, text=True)
                if vres.returncode != 0:
                    raise SystemExit(f"vs_arm {r['bundle']} failed: {vres.stderr[-500:]}")
                r["vs_arm"] = _last_json(vres.stdout)
    sizes = {}
    for backend, recipe in size_configs:
        _say(f"{backend} {recipe}: export (or reuse) for its size")
        sizes[f"{backend}:{recipe}"] = _size_mb(_bundle(model, backend, recipe, out))
    return {"model": model, "iters": iters, "warmup": warmup, "seconds": seconds, "rows": rows, "sizes": sizes,
            "machine": {"platform": platform.platform(), "machine": platform.machine(),
                        "processor": eager.get("processor") or platform.processor(), "cpus": eager.get("cpus"),
                        "int8_features": eager.get("int8_features")},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _fmt_parity(p: dict | None) -> str:
    if not p:
        return "-"
    c = p["components"]

    def s(v):
        return "inf" if v == "inf" else f"{v:.1f}"

    def stft(v):
        return "-" if v is None else f"{v:.3f}"

    e2e = p.get("end_to_end", {})
    return (f"TE {s(c['text_encoder']['metrics']['sqnr_db'])} / DiT {s(c['dit']['metrics']['sqnr_db'])} / "
            f"dec {s(c['decoder']['metrics']['sqnr_db'])} dB; MR-STFT dec {stft(c['decoder'].get('mrstft'))} / "
            f"e2e {stft(e2e.get('mrstft'))}; {'PASS' if p['passed'] else 'FAIL'}")


def _targets(rows: list[dict], sizes: dict[str, float], int8_features: list[str] = ()) -> list[str]:
    """The issue's targets, each checked against the measured rows (met / missed, with the figures)."""
    eager = rows[0]["bench"]["e2e_s"]
    bundles = rows[1:]
    if not bundles:
        return []
    ours = [r for r in bundles if "arm recipe" not in r["config"]] or bundles  # edgegen's own bundles
    best = min(ours, key=lambda r: r["bench"]["e2e_s"])
    b = best["bench"]
    out = ["Targets (best bundle = edgegen's fastest end to end; Arm's recipe is the competitor):", ""]

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'MET   ' if ok else 'MISSED'} {text}")

    ratio = b["e2e_s"] / eager
    line(ratio <= 0.25, f"best bundle ({best['config']}) end to end {b['e2e_s']:.2f} s = {ratio:.2f}x eager "
                        f"{eager:.2f} s (target <= 0.25x)")
    for r in bundles:
        backend = r["config"].split()[0]
        real = next((a for a in bundles if a["config"] == f"{backend} arm recipe (bare calls)"), None)
        if real is not None and r is not real and "low-memory" not in r["config"] and "mobile" not in r["config"]:
            q = r["bench"]["e2e_s"] / real["bench"]["e2e_s"]
            bound, what = (0.5, "with the int8 decoder of the fast recipe") if r["config"].split()[1] == "fast" \
                else (1.0, "with an fp32 decoder")
            rows_text = f"{q:.2f}x Arm's recipe built Arm's way ({real['config']}, {real['bench']['e2e_s']:.2f} s)"
            v = r.get("vs_arm")
            if v:  # the verdict from the interleaved measurement; the rows' ratio beside it
                rounds = ", ".join(f"{x:.2f}" for x in v["round_ratios"])
                pair = f"{v['edgegen']['e2e']:.2f} vs {v['arm_recipe']['e2e']:.2f} s"
                line(v["ratio"] <= bound, f"{r['config']} = {v['ratio']:.2f}x Arm's recipe on {backend}, interleaved "
                                          f"in one process ({pair}, {v['rounds']} rounds: {rounds}; `vs_arm.py`); "
                                          f"the rows above: {rows_text} (target <= {bound}x {what})")
            else:
                line(q <= bound, f"{r['config']} = {rows_text} on {backend} (target <= {bound}x {what})")
        arm = next((a for a in bundles if a["config"] == f"{backend} mobile (arm)"), None)
        if arm is not None and r is not arm and "low-memory" not in r["config"]:
            q = r["bench"]["e2e_s"] / arm["bench"]["e2e_s"]
            line(q <= 0.7, f"{r['config']} = {q:.2f}x the Arm recipe ({arm['config']}) on {backend} (target <= 0.7x)")
    for r in bundles:  # issue 14: the harness's DiT step within 10% of the bare runtime call, back to back
        if r.get("bare_dit"):
            bd = r["bare_dit"]
            rounds = ", ".join(f"{x:.2f}" for x in bd["round_ratios"])
            line(bd["ratio"] <= 1.10, f"{r['config']} harness DiT step {bd['harness_dit_step_s']:.3f} s = "
                                     f"{bd['ratio']:.2f}x the bare runtime call {bd['dit_step_s']:.3f} s, interleaved in "
                                     f"one process (`bare_dit.py --against-harness`, {bd['rounds']} rounds: {rounds}; "
                                     f"the bench's own step {r['bench']['dit_step_s']:.3f} s); target <= 1.10x")
    dot = bool(int8_dot_product(int8_features))
    for r in bundles:  # issue 13: the fast recipe's int8 decoder vs the fp32 decoder of the same backend
        backend, recipe = r["config"].split()[:2]
        # the fp32 recipe's decoder, else the int8 recipe's (its decoder is fp32 too: quantize/int8.toml)
        fp32_row = next((a for c in ("fp32", "int8") for a in bundles if a["config"] == f"{backend} {c}"), None)
        if recipe != "fast" or "low-memory" in r["config"] or fp32_row is None:
            continue
        q = fp32_row["bench"]["stages"]["decoder"] / r["bench"]["stages"]["decoder"]
        line(q >= 1.5, f"{backend} fast decoder {r['bench']['stages']['decoder']:.2f} s = {q:.2f}x the speed of the "
                       f"fp32 decoder ({fp32_row['config']}) {fp32_row['bench']['stages']['decoder']:.2f} s "
                       f"(target >= 1.5x on a CPU with "
                       f"int8 dot products; this CPU has {'them' if dot else 'NONE: the target cannot be met here'})")
        par = r.get("parity") or {}
        dec = par.get("components", {}).get("decoder", {})
        if dec:
            line(bool(dec.get("passed")), f"{backend} fast decoder parity {dec['metrics']['sqnr_db']:.1f} dB, MR-STFT "
                                          f"{dec.get('mrstft') or float('nan'):.3f} (its recipe's floor: "
                                          f"{dec.get('gate', {}).get('threshold', '?')} dB)")
    line(b["peak_rss_mb"] <= 1536, f"best bundle peak RSS {b['peak_rss_mb']:.0f} MB (target <= 1536 MB)")
    lean = min(ours, key=lambda r: r["bench"]["peak_rss_mb"])
    if lean is not best:
        lb = lean["bench"]
        line(lb["peak_rss_mb"] <= 1536 and lb["e2e_s"] / eager <= 0.25,
             f"leanest bundle ({lean['config']}) peak RSS {lb['peak_rss_mb']:.0f} MB at {lb['e2e_s']:.2f} s = "
             f"{lb['e2e_s'] / eager:.2f}x eager (target: both <= 1536 MB and <= 0.25x)")
    q = b["time_to_first_audio_s"] / b["e2e_s"]
    line(q <= 0.20, f"best bundle time to first audio {b['time_to_first_audio_s']:.2f} s = {q:.0%} of end to end "
                    "(target <= 20%)")
    for r in bundles:  # issue 14: frames decoded once, a default int8 generation within 1.0 GB
        rb = r["bench"]
        if "decoded_latent_frames" in rb and "audio_seconds" in rb:
            bound = math.ceil(rb["audio_seconds"] * 44100 / 2048) + 10  # SAO-small: hop 2048, receptive field 10
            line(rb["decoded_latent_frames"] <= bound, f"{r['config']} decodes {rb['decoded_latent_frames']} latent "
                 f"frames for {rb['audio_seconds']:.2f} s (target <= frames needed + receptive field = {bound})")
        if r["config"].split()[1] == "int8" and "low-memory" not in r["config"]:
            line(rb["peak_rss_mb"] <= 1024, f"{r['config']} default generation peak RSS {rb['peak_rss_mb']:.0f} MB "
                                            "(target <= 1024 MB)")
    fp32 = {r["config"].split()[0]: r["size_mb"] for r in bundles if r["config"].split()[1] == "fp32"}
    fp32.update({k.split(":")[0]: v for k, v in sizes.items() if k.endswith(":fp32") and k.split(":")[0] not in fp32})
    for r in bundles:
        backend, recipe = r["config"].split()[:2]
        if recipe == "int8" and fp32.get(backend) and "low-memory" not in r["config"]:
            q = r["size_mb"] / fp32[backend]
            line(q <= 0.3, f"{backend} int8 bundle {r['size_mb']:.0f} MB = {q:.2f}x the fp32 bundle "
                           f"{fp32[backend]:.0f} MB (target <= 0.3x)")
    return out


def write_report(results: dict, out: Path) -> str:
    rows = results["rows"]
    eager = rows[0]["bench"]
    lines = [f"Model `{results['model']}`, {results['seconds'] or 'the maximum'} s of audio requested, "
             f"medians of {results['iters']} runs after {results['warmup']} warm-up, {results['date']}.",
             f"Machine: {results['machine']['platform']}, {results['machine']['processor']}, "
             f"{results['machine']['cpus']} CPUs; {describe_int8(results['machine'].get('int8_features') or [])}.",
             "",
             "| config | load s | text enc s | DiT s (per step) | decoder s | end to end s | x eager | RTF | "
             "first audio s (of e2e) | peak RSS MB | bundle MB | parity (SQNR) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        b, st = r["bench"], r["bench"]["stages"]
        size = "-" if r["size_mb"] is None else f"{r['size_mb']:.1f}"
        frames = f" [{b['decoded_latent_frames']} fr]" if "decoded_latent_frames" in b else ""
        lines.append(f"| {r['config']} | {st['load']:.2f} | {st['text_encoder']:.3f} | {st['dit']:.2f} "
                     f"({b['dit_step_s']:.3f}) | {st['decoder']:.2f}{frames} | {b['e2e_s']:.2f} | "
                     f"{b['e2e_s'] / eager['e2e_s']:.2f} | {b['rtf']:.2f} | {b['time_to_first_audio_s']:.2f} "
                     f"({b['time_to_first_audio_s'] / b['e2e_s']:.0%}) | "
                     f"{b['peak_rss_mb']:.0f} | {size} | {_fmt_parity(r['parity'])} |")
    lines += ["", *_targets(rows, results.get("sizes", {}), results["machine"].get("int8_features") or [])]
    for key, mb in results.get("sizes", {}).items():
        lines.append(f"- size only (not timed): {key} bundle {mb:.0f} MB")
    table = "\n".join(lines)
    (out / "RESULTS.md").write_text(table + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
        left = [0.0] * len(rows)
        for stage, colour in (("text_encoder", "#8da0cb"), ("dit", "#fc8d62"), ("decoder", "#66c2a5")):
            vals = [r["bench"]["stages"][stage] for r in rows]
            ax.barh([r["config"] for r in rows], vals, left=left, color=colour, label=stage)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xlabel("seconds per generation (median)")
        ax.invert_yaxis()
        ax.legend(loc="lower right")
        ax.set_title(f"{results['model']}: time per stage")
        fig.tight_layout()
        fig.savefig(out / "stages.png", dpi=110)
    except ImportError:
        pass
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random:sao-small")
    ap.add_argument("--out", type=Path, default=Path("out/suite"))
    ap.add_argument("--configs", default="executorch:fp32,executorch:int8,executorch:int4,executorch:mobile,"
                                         "executorch:fast,litert:fp32,litert:int8,litert:int4,litert:mobile,"
                                         "litert:fast,litert:size")
    ap.add_argument("--size-configs", default="", help="backend:recipe list that is only exported and sized "
                                                       "(e.g. the fp32 bundles the int8 size target compares with)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=None, help="default: the model's maximum (SAO-small 11.89)")
    ap.add_argument("--arm", default="", help="backends for the row of Arm's recipe built Arm's way (litert)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    configs = [tuple(c.split(":")) for c in args.configs.split(",")]
    size_configs = [tuple(c.split(":")) for c in args.size_configs.split(",") if c]
    arm = tuple(b for b in args.arm.split(",") if b)
    results = measure(args.model, configs, args.out, args.iters, args.warmup, args.seconds, size_configs, arm)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(write_report(results, args.out))


if __name__ == "__main__":
    main()
