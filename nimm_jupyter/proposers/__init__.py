"""proposers layer."""
