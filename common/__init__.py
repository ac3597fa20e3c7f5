"""caterva2.common."""
