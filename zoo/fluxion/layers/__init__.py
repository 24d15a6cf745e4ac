"""Fluxion's leaf layers."""
