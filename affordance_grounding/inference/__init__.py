"""Model files and inference backends: one result type, backend selection, engines, text tower."""
