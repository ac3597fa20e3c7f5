"""caterva2.broker."""
