"""`edgegen generate` (the PyTorch reference) and `edgegen run` (a bundle): both write a WAV (edgegen.generate)."""

from __future__ import annotations

from pathlib import Path

import click

from edgegen.cli import (bundle_option, err, init_audio_options, low_memory_option, main, model_option,
                         sampling_bar, seconds_option, t5_option, t5_precision_option, threads_option,
                         truncate_prompt_option, wav_output_option, weight_cache_options)


@main.command()
@model_option
@t5_option
@t5_precision_option
@click.option("--prompt", "-p", required=True, help="Text prompt.")
@seconds_option
@click.option("--steps", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="Sampling steps (ping-pong; SAO-small is post-trained for 8).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise (same seed, same audio).")
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject noise: float32 .npy of shape [steps, 64, T].")
@click.option("--cfg-scale", type=float, default=1.0, show_default=True,
              help="Classifier-free guidance scale (a finite number; 1 = no guidance).")
@click.option("--pcm16", is_flag=True, help="Write 16-bit PCM instead of float32.")
@click.option("--stream", is_flag=True, help="Decode with the stateful streaming decoder (windows back to back, each "
                                             "latent frame decoded once) and write each chunk as it is ready.")
@truncate_prompt_option
@init_audio_options
@wav_output_option
def generate(model, t5, t5_precision, prompt, seconds, steps, seed, noise, cfg_scale, pcm16, stream, truncate_prompt,
             init_audio, init_noise_level, output):
    """Generate audio with the PyTorch reference pipeline (text-to-audio, or audio-to-audio with --init-audio)."""
    from edgegen.generate import WavRequest, generate_wav

    job = WavRequest(prompt, output, seconds=seconds, seed=seed, noise=noise, truncate_prompt=truncate_prompt,
                     init_audio=init_audio, init_noise_level=init_noise_level, pcm16=pcm16, stream=stream,
                     steps=steps, cfg_scale=cfg_scale)
    result = generate_wav(job, model=model, t5=t5, t5_precision=t5_precision, log=err, bar=sampling_bar)
    click.echo("\n".join(result.lines))


@main.command()
@bundle_option
@click.option("--prompt", "-p", required=True, help="Text prompt.")
@seconds_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the noise (same seed, same audio).")
@click.option("--noise", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Inject noise: float32 .npy of shape [steps, 64, T].")
@threads_option
@low_memory_option
@weight_cache_options
@click.option("--pcm16", is_flag=True, help="Write 16-bit PCM instead of float32.")
@click.option("--stream", is_flag=True, help="Write each decoded window to OUTPUT as soon as it is ready "
                                             "(bundles exported with a decoder window).")
@truncate_prompt_option
@init_audio_options
@click.option("--verbose", "-v", is_flag=True,
              help="Also say on stderr which int8 dot-product instructions this CPU has, and warn when the bundle's "
                   "int8 layers cannot use any.")
@wav_output_option
def run(bundle, prompt, seconds, seed, noise, threads, low_memory, weight_cache, no_weight_cache, pcm16, stream,
        truncate_prompt, init_audio, init_noise_level, verbose, output):
    """Generate audio by running a bundle's artifacts in its runtime (audio-to-audio with --init-audio: needs a
    bundle exported with --audio-to-audio)."""
    from edgegen.generate import WavRequest, run_wav

    job = WavRequest(prompt, output, seconds=seconds, seed=seed, noise=noise, truncate_prompt=truncate_prompt,
                     init_audio=init_audio, init_noise_level=init_noise_level, pcm16=pcm16, stream=stream)
    result = run_wav(job, bundle=bundle, threads=threads, low_memory=low_memory, weight_cache=weight_cache,
                     no_weight_cache=no_weight_cache, verbose=verbose, log=err, bar=sampling_bar)
    click.echo("\n".join(result.lines))
