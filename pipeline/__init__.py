"""Ground floor of the toolkit: DALI graphs, the loader factory, file-list and pca.json readers.

Imports neither `model` nor `tools`.
"""
