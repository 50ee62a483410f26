"""The serving layer: the HTTP service, its online feature store and event stream."""
