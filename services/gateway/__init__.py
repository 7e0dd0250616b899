"""The gateway: the public front door in front of the inference services (no TensorFlow here)."""
