"""kmixvae.evaluation."""
