"""Tests of `kmixvae.utils`."""
