"""ARC post-training evidence on the synthetic latent task (issue 12)."""
