"""Small helpers shared across kmixvae."""
