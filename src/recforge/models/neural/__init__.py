"""Neural models trained with PyTorch through the model-free engine in `recforge.nn`
(NCF and AutoRec). Importing a module here may import torch; the registry imports them lazily.
"""
