"""Tests of `kmixvae.presets`."""
