"""cardd: the card driver daemon (hardware backends, signaling, media engine, bus)."""
