"""What a target profile asks of XNNPACK at run time, and the precision each artifact then computes in.

    flags, ran = litert_settings(manifest, "decoder", fp16=True)   # (0xcf, "fp16") for android-arm64-litert, mobile
    precision_report(manifest, cpuinfo_text)  # {"decoder": {"precision": "fp32", "asked": "fp16", "why": ...}, ...}

A profile (`export_targets/*.toml`) names XNNPACK delegate flags (`xnnpack_flags`) and whether the target computes
in fp16 (`fp16_compute`). LiteRT takes both when it compiles an artifact, as a bit field (the values of LiteRT's
`tflite/delegates/xnnpack/xnnpack_delegate.h`): the profile's flags for every artifact, and FORCE_FP16 for an
artifact whose recipe rule is fp16 (the `mobile` decoder: exported fp32, computed in fp16, as Arm's app runs it).
XNNPACK computes fp16 only where the CPU has fp16 arithmetic (Arm `fphp` + `asimdhp`, ARMv8.2); elsewhere (x86
here) the artifact runs fp32 and the report says so. ExecuTorch applies the same choice at export: an fp16 rule
casts the component to half (`export.wrappers.to_half`), and XNNPACK runs it in fp16 where it can. ExecuTorch has
no run-time delegate flags, so a profile listing any is refused for it (`check_profile`).

The Python runtime (edgegen.runtime) and the native runner (android_demo/runner/src/engine_litert.cpp) compute the
same flags; `precision_report` is what `bench` and `parity` print and what their JSON holds.
"""

from __future__ import annotations

from pathlib import Path

from edgegen.errors import EdgegenError

FLAG_BITS = {"QS8": 0x1, "QU8": 0x2, "FORCE_FP16": 0x4, "DYNAMIC_FULLY_CONNECTED": 0x8, "VARIABLE_OPERATORS": 0x10,
             "TRANSIENT_INDIRECTION_BUFFER": 0x20, "ENABLE_LATEST_OPERATORS": 0x40,
             "ENABLE_SUBGRAPH_RESHAPING": 0x80, "SLOW_CONSISTENT_ARITHMETIC": 0x200,
             "DISABLE_SUBGRAPH_RESHAPING": 0x400}
FP16_FEATURES = ("fphp", "asimdhp")  # Arm FEAT_FP16: scalar and vector half-precision arithmetic


def read_cpuinfo() -> str:
    """This machine's /proc/cpuinfo ("" where there is none): what the CPU feature checks read."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def fp16_arithmetic(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text (x86 `flags`, Arm `Features`) shows fp16 arithmetic XNNPACK computes in."""
    have = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            have.update(value.split())
    return all(f in have for f in FP16_FEATURES)


def profile_flags(target) -> int:
    """The profile's `xnnpack_flags` as LiteRT's bit field; an unknown name is refused, naming the known ones."""
    bits = 0
    for name in target.xnnpack_flags:
        if name not in FLAG_BITS:
            raise EdgegenError(f"target {target.name}: unknown XNNPACK flag {name!r}; known: {', '.join(FLAG_BITS)}")
        bits |= FLAG_BITS[name]
    return bits


def profile_precision(target, schemes: dict[str, int] | None) -> str:
    """The float precision a profile and an artifact's recipe schemes ask it to compute in: fp16 where the target
    computes in fp16 and a rule chose fp16 (what export writes as the manifest's `compute_precision`)."""
    return "fp16" if target.fp16_compute and (schemes or {}).get("fp16") else "fp32"


def asks_fp16(manifest, component: str) -> bool:
    """Whether the bundle's profile and recipe ask `component` to compute in fp16."""
    artifact = manifest.artifacts.get(component)
    if not manifest.target.fp16_compute or artifact is None:
        return False
    if artifact.compute_precision is not None:  # written at export (bundles from before it have none)
        return artifact.compute_precision == "fp16"
    return profile_precision(manifest.target, artifact.schemes) == "fp16"


def computes_in(manifest, component: str, fp16: bool) -> str:
    """The float precision `component` computes in on a CPU with (`fp16`) or without fp16 arithmetic: what the
    profile asks, except that a LiteRT artifact runs fp32 without fp16 arithmetic (an ExecuTorch one was cast to
    half at export, so its tensors are fp16 on any CPU)."""
    if not asks_fp16(manifest, component):
        return "fp32"
    return "fp16" if fp16 or manifest.backend == "executorch" else "fp32"


def litert_settings(manifest, component: str, fp16: bool) -> tuple[int | None, str]:
    """(XNNPACK flags, precision it computes in) for a LiteRT artifact on a CPU with (`fp16`) or without fp16
    arithmetic; flags None: the profile sets none, the runtime's defaults apply."""
    flags = profile_flags(manifest.target)
    if computes_in(manifest, component, fp16) == "fp16":
        return flags | FLAG_BITS["FORCE_FP16"], "fp16"
    return (flags if manifest.target.xnnpack_flags else None), "fp32"


def precision_report(manifest, cpuinfo: str) -> dict[str, dict]:
    """Per artifact: the float precision it computes in on this CPU, and where that is not what the profile asked
    for, what was asked and why not. Its int8 layers (if any) are int8 either way."""
    fp16 = fp16_arithmetic(cpuinfo)
    out = {}
    for component in manifest.artifacts:
        asked = "fp16" if asks_fp16(manifest, component) else "fp32"
        ran = computes_in(manifest, component, fp16)
        row = {"precision": ran}
        if ran != asked:
            row.update(asked=asked, why="this CPU has no fp16 arithmetic (Arm fphp + asimdhp), so XNNPACK "
                                        "computes in fp32")
        out[component] = row
    return out


def check_profile(target) -> None:
    """Refuse at export what a runtime cannot apply: ExecuTorch has no run-time XNNPACK delegate flags."""
    profile_flags(target)
    if target.backend == "executorch" and target.xnnpack_flags:
        raise EdgegenError(f"target {target.name}: xnnpack_flags {list(target.xnnpack_flags)} cannot apply to "
                           "ExecuTorch, whose XNNPACK delegate takes no run-time flags (its choices are made at "
                           "export); remove them from the profile")
