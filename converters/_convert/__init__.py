"""Converting declared conversions: sources, upstream tensors, tracing, the streaming output, recording.

Names a family nowhere: every fact about a model comes from its `Conversion` declaration.
"""
