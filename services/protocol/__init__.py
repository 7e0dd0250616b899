"""What the wire protocols (TensorFlow Serving REST, the Open Inference Protocol) fix, stated once
for both services. Imports nothing of the services, so anything may import it."""
