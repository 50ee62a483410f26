"""Retrieval models: the two-tower encoder with side features (imports torch).
"""
