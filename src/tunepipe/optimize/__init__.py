"""Making the trained model cheaper to run: pruning, ONNX export, parity and latency checks."""
