"""The paper's numbers for data and augmentation, each in one place (shared PAPER.md §2, §4).

Pixels in the pipeline are on the 0-255 scale, RGB, until normalisation.
"""

# §2: "rescale so the shorter side is 256, then crop the central 256x256 patch".
RESIZE_SHORTER = 256
STORED_SIZE = 256
# §4.1: random 224x224 patches of the 256x256 image (and their reflections) for training;
# at test time the centre patch, or the ten patches of §6 (four corners + centre, and their flips).
CROP_SIZE = 224
FLIP_PROBABILITY = 0.5
# §6's ten views as (crop_pos_x, crop_pos_y, mirror), in torchvision's TenCrop order: top-left,
# top-right, bottom-left, bottom-right, centre, then the same five mirrored.
TEN_CROP_POSITIONS = tuple(
    (x, y, mirror) for mirror in (0, 1) for (x, y) in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))
)

# §2: the paper subtracts the mean activity over the training set. These are the ImageNet mean and
# standard deviation of RGB pixels (the values torchvision uses), on the 0-255 scale. A user's own
# mean comes from pca.json (tools/compute_pca.py).
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# "mean": subtract the mean only (the paper); "meanstd": subtract the mean, divide by the std.
NORMALIZATIONS = ("mean", "meanstd")

# §4.1 PCA colour augmentation: alpha_i ~ N(0, 0.1), drawn once per image each time it is used.
PCA_ALPHA_STD = 0.1
# Eigen-decomposition of the RGB covariance of ImageNet pixels in [0, 1], as published by
# fb.resnet.torch; used only when no pca.json is given. Columns of the matrix are components.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# The lighting offset eigvec @ (alpha * eigval) is a pixel value on the scale of the eigenvalues'
# pixels ([0, 1]); on the pipeline's 0-255 scale it is multiplied by this. (Multiplying the
# eigenvalues by 255**2, as their variance would scale, gives offsets near 1400 grey levels: every
# image saturated. fb.resnet.torch and torchvision-style lighting also scale linearly.)
PIXEL_SCALE = 255.0
