"""kmixvae.viz."""
