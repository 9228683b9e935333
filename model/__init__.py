"""The paper's AlexNet, its training engine and the two-GPU code. Gets batches only from `pipeline.loader`."""
