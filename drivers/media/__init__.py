"""The media engine: batched DSP for every channel, one tick per audio block."""
