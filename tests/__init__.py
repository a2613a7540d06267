"""The test suite; its sub-folders mirror the package `kmixvae/` (plus apps/, scripts/, cli/)."""
