"""Test support: references written separately from matport, value comparison, paths."""
