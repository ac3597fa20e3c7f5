"""caterva2.publisher."""
