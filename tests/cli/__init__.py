"""Tests of the `kmixvae` command line as a user meets it."""
