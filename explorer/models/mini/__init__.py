"""Our own small architectures, trained in this repository (see ``data/models/*/README.md``)."""
