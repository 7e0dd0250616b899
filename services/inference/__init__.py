"""Inference service: serves every Keras model under a model root over TF Serving REST and V2."""
