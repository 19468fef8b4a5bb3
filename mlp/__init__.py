"""mlp-sweeps: a from-scratch NumPy multilayer perceptron driven by W&B sweeps."""
