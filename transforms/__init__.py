"""Datamapper, default mappings, mapping tables and transform functions."""
