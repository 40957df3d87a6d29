"""`edgegen export` (edgegen.export.run), `sensitivity` (edgegen.sensitivity), `build-runner` (edgegen.runner_build)."""

from __future__ import annotations

from pathlib import Path

import click

from edgegen.cli import err, main, model_option, recipe_option, t5_option, t5_precision_option, target_option


@main.command("export")
@model_option
@t5_option
@t5_precision_option
@target_option
@recipe_option
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path), help="Bundle folder to create.")
@click.option("--components", "-c", default="text_encoder,dit,decoder", show_default=True,
              help="Comma-separated subset of text_encoder,dit,decoder,encoder.")
@click.option("--audio-to-audio", is_flag=True,
              help="Also export the VAE encoder (a fourth artifact), so the bundle can start from init audio "
                   "(`run --init-audio`). The recipe's [components.encoder] applies; fp32 when it has none.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--zip", "make_zip", is_flag=True, help="Also write OUTPUT.zip for app bundling.")
@click.option("--decoder-window", default="auto", show_default=True,
              help="Latent frames per decoder call: auto (stream when the sequence is longer than the default "
                   "window), whole, or a number. A streamed decoder uses less memory and plays audio early.")
@click.option("--decoder-stream", type=click.Choice(["stateful", "overlap"]), default="stateful", show_default=True,
              help="How a streamed decoder runs: stateful (windows back to back, each latent frame decoded once; "
                   "bundle schema 3) or overlap (overlapping windows of the plain decoder, ~1.4x the frames; schema 2, "
                   "for tools that read only schema 1-2).")
@click.option("--verbose", is_flag=True, help="Show the converters' own output (by default it goes to a log file, "
                                              "shown only when a conversion fails).")
@click.option("--no-verify", is_flag=True,
              help="Publish without running each artifact against its reference component (by default a component "
                   "below its recipe's floor is refused: exit 1, nothing written). The manifest records the skip.")
@click.option("--sensitivity-floor", type=click.FloatRange(0, 200, min_open=True), default=None,
              help="Choose the decoder's float layers for THIS checkpoint: measure each layer's int8 sensitivity "
                   "(`edgegen sensitivity`) and keep the fewest float that meet this SQNR (dB), which becomes the "
                   "decoder's floor. Applies when the recipe quantizes the decoder (e.g. --recipe fast).")
def export_cmd(model, t5, t5_precision, target, recipe, output, components, audio_to_audio, force, make_zip,
               decoder_window, decoder_stream, verbose, no_verify, sensitivity_floor):
    """Quantize and export the three artifacts (four with --audio-to-audio) into a self-describing bundle."""
    from edgegen.export.run import export_model, format_export

    report = export_model(model=model, t5=t5, t5_precision=t5_precision, target=target, recipe=recipe, output=output,
                          components=components, audio_to_audio=audio_to_audio, force=force, make_zip=make_zip,
                          decoder_window=decoder_window, decoder_stream=decoder_stream, verbose=verbose,
                          verify=not no_verify, sensitivity_floor=sensitivity_floor, log=err)
    click.echo(format_export(report))


@main.command()
@model_option
@t5_option
@t5_precision_option
@click.option("--component", "-c", required=True, type=click.Choice(["decoder", "dit", "text_encoder"]),
              help="The component to measure.")
@click.option("--scheme", default="int8", show_default=True, type=click.Choice(["int8", "int8w"]),
              help="Quantization simulated one layer at a time: int8 = per-channel int8 weights + dynamic int8 "
                   "activations; int8w = the same weights, fp32 activations (the `size` recipe's weight-only scheme).")
@click.option("--prompts", type=click.IntRange(1, 16), default=2, show_default=True,
              help="Captions the reference samples representative inputs from.")
@click.option("--seconds", type=float, default=None, help="Audio length the inputs are sampled at (default 10 s, "
                                                          "or the model's maximum if shorter).")
@click.option("--frames", type=click.IntRange(4, 4096), default=32, show_default=True,
              help="Decoder: latent frames per representative window.")
@click.option("--backend", default="litert", show_default=True, type=click.Choice(["litert", "executorch"]),
              help="Whose int8 kernels to simulate. Both quantize a decoder convolution's input with one scale; "
                   "they differ on the ConvTransposes: a GEMM with one scale per time step on LiteRT, a "
                   "(polyphase) convolution with one scale on ExecuTorch.")
@click.option("--floor", "floor_db", type=click.FloatRange(0, 200, min_open=True), default=None,
              help="Also choose the fewest layers to keep in float so the component meets this SQNR (dB).")
@click.option("--write-recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --floor: write the mixed recipe (.toml) that keeps those layers float.")
@click.option("--recipe", "-r", default="fast", show_default=True,
              help="With --write-recipe: the recipe the other components' rules come from.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every layer's figures as JSON.")
def sensitivity(model, t5, t5_precision, component, scheme, prompts, seconds, frames, backend, floor_db,
                write_recipe, recipe, json_path):
    """Quantize one layer at a time on representative inputs; report each layer's SQNR cost and time share, and
    (--floor, --write-recipe) the mixed recipe that keeps the fewest layers float while meeting the floor."""
    from edgegen.sensitivity import sensitivity_report

    sensitivity_report(model=model, t5=t5, t5_precision=t5_precision, component=component, scheme=scheme,
                       prompts=prompts, seconds=seconds, frames=frames, backend=backend, floor_db=floor_db,
                       write_recipe=write_recipe, recipe=recipe, json_path=json_path, log=err, show=click.echo)


@main.command("build-runner")
@click.option("--target", "-t", required=True,
              type=click.Choice(["host", "linux-aarch64", "android-arm64-portable", "android-arm64"]),
              help="host: this machine; linux-aarch64: arm64 Linux with glibc; android-arm64-portable: a folder that "
                   "runs on any arm64 Android or Linux, glibc's loader included (no NDK); android-arm64: an NDK build.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder that will hold the edgegen-runner executable (and its libraries).")
@click.option("--android-ndk", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="ANDROID_NDK",
              help="Android NDK root (android-arm64 only; default $ANDROID_NDK).")
@click.option("--executorch-android-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Install prefix of an ExecuTorch build for Android arm64-v8a (android-arm64 only).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Parallel compile jobs.")
def build_runner_cmd(target, output, android_ndk, executorch_android_dir, jobs):
    """Build the native C++ runner (android_demo/runner; ExecuTorch and LiteRT bundles) for the host, aarch64 Linux
    or Android."""
    from edgegen.runner_build import build_runner

    exe = build_runner(target=target, out_dir=output, android_ndk=android_ndk,
                       executorch_android_dir=executorch_android_dir, jobs=jobs, log=err)
    click.echo(f"built {exe}")
