"""Evaluation: real-bitstream metrics, classic codecs, Bjontegaard deltas."""
