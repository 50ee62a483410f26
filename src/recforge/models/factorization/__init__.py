"""Factorization models: rating-prediction MF/SVD++/explicit ALS, truncated SVD, implicit ALS,
BPR, their shared factor machinery and SGD kernels, and the blend of rating models.
"""
