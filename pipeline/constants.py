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
# "image": subtract the per-pixel mean image of the training set (the authors' code: cuda-convnet2
# convdata.py:80,104,192 `data_mean`, 3x256x256; Caffe's bvlc_alexnet `mean_file`); "mean": subtract the
# per-channel mean; "meanstd": subtract the per-channel mean, divide by the std.
NORMALIZATIONS = ("image", "mean", "meanstd")
# Which window of the 256x256 mean image a crop subtracts (normalize="image"). "centre": the centre crop-size
# window, the same for every crop, flip and test view (cuda-convnet2 convdata.py:104 `data_mean_crop`,
# subtracted at :192 after jpeg.cpp has cropped and flipped the image). "crop": the mean under the crop's
# own window, mirrored with it (Caffe data_transformer.cpp: mean[data_index] at the pixel's source).
MEAN_WINDOWS = ("centre", "crop")

# §4.1 PCA colour augmentation: alpha_i ~ N(0, 0.1), drawn once per image each time it is used.
PCA_ALPHA_STD = 0.1
# What the paper's "alpha_i lambda_i" multiplies alpha by (pipeline/lighting.py). "stdev": the standard
# deviation sqrt(lambda_i) of the component on the 0-255 scale, the authors' code (cuda-convnet2
# convdata.py:74 `randn * pca_stdevs`, with color_pca[0] = 19.7, 37.1, 121.8 grey levels in
# make-data/input_meta). "eigval": lambda_i of [0, 1] pixels times 255 (fb.resnet.torch's reading).
LIGHTING_SCALES = ("stdev", "eigval")
# Eigen-decomposition of the RGB covariance of ImageNet pixels in [0, 1], as published by
# fb.resnet.torch; used only when no pca.json is given. Columns of the matrix are components.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# pca.json holds statistics of [0, 1] pixels; the pipeline's pixels are 0-255, so a mean, a std or a
# standard deviation sqrt(eigval) is multiplied by this. (The "eigval" lighting reading multiplies the
# eigenvalue itself by it, as fb.resnet.torch does; scaling it as a variance, by 255**2, would give
# offsets near 1400 grey levels.)
PIXEL_SCALE = 255.0
