"""kmixvae.models."""
