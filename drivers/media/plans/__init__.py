"""Tone plans (package data): one TOML file per country, loaded by drivers.media.tones."""
