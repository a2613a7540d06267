"""kmixvae.training."""
