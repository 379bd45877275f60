"""Squarespace (Commerce API 1.0): `normalise` reads its order JSON into Koppel's canonical model."""
