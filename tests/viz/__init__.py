"""Tests of `kmixvae.viz`."""
