"""kmixvae.data."""
