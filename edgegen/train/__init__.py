"""Training: rectified-flow base models and ARC adversarial post-training on cached VAE latents.

    data.py    captioned audio folder -> latent + conditioning cache; synthetic captioned corpus
    rf.py      RFConfig, rf_loss, train_rf        (base model, diffusion_objective "rectified_flow")
    arc.py     ARCConfig, losses, Discriminator, train_arc   (few-step generator, "rf_denoiser")
    loop.py    process setup (CPU / torchrun DDP), EMA, resumable state, official-layout output
    commands.py  the `edgegen train` click group (cache, synth, rf, arc)
"""
