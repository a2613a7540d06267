"""Tests of `kmixvae.training`."""
