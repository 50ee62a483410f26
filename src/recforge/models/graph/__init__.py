"""Graph recommenders on the user-item interaction graph, trained with PyTorch (LightGCN).
Importing a module here imports torch; the registry imports them lazily.
"""
