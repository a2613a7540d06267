"""kmixvae.layers."""
