"""Parquet schemas and run configuration. Imports neither Beam nor the scorers."""
