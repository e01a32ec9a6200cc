"""Measures of the other seed papers: mode connectivity, representation similarity, valley asymmetry, NTK, ..."""
