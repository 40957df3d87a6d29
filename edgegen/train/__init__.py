"""Training: the SAO-family VAE on audio clips, rectified-flow base models and ARC adversarial post-training on
cached VAE latents, all on one loop.

    data.py    captioned audio folder -> latent + conditioning cache; synthetic captioned corpus
    vae.py     VAEConfig, losses, train_vae       (Oobleck VAE, written into a model in the official layout)
    rf.py      RFConfig, rf_loss, train_rf        (base model, diffusion_objective "rectified_flow")
    arc.py     ARCConfig, losses, Discriminator, train_arc   (few-step generator, "rf_denoiser")
    loop.py    the training loop (fit + Trainer), process setup (CPU / torchrun DDP), EMA, resumable state, run
               folders, official-layout output
    store.py   cache and state files: safetensors + JSON metadata, never a pickle
    checks.py  setting checks shared with the `edgegen train` commands (edgegen/cli.py)
"""
