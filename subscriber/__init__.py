"""caterva2.subscriber."""
