"""recforge: build, evaluate and serve recommender systems."""

__version__ = "0.1.0"
