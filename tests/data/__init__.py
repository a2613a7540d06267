"""Tests of `kmixvae.data`."""
