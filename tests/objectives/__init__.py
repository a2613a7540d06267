"""Tests of `kmixvae.objectives`."""
