"""Network modules shared by training and the PyTorch runtime."""
