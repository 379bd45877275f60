"""Datamapper benchmark: the default Exact Online order mapping against a hand-written function."""
