"""Beam stages of the annotation pipeline: read, segment, score, threshold, label, write."""
