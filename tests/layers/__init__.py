"""Tests of `kmixvae.layers`."""
