"""Tests of `kmixvae.runs`."""
