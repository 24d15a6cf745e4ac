"""Segment Anything (SAM) as chain models."""
