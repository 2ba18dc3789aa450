"""Training of the mini models shipped in ``data/models/`` (reproducible from a seed)."""
