"""Tests of `kmixvae.models`."""
