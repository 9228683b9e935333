"""Pictures of a run (`imagenet-tools visualize`, `preview`): curves, kernels, neighbours, augmentations, report."""
