"""Baselines: constant, mean, popularity and random recommenders and the biased baseline
(`BaselineOnly`) the neighbour and factor models build on.
"""
