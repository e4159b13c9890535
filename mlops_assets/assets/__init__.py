"""Software-defined assets, one module per stage: raw inputs, then features."""
