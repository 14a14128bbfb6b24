"""jupyter layer."""
