"""Neighbour models: user/item kNN over a similarity (`similarity`) and EASE, a linear
item-item model (its learned item-item weight matrix plays the role of a similarity, so it lives
with the neighbour family rather than in a family of its own).
"""
