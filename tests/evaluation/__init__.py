"""Tests of `kmixvae.evaluation`."""
