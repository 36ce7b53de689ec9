"""Torch side of nnbrain: architectures, weight loading, activation extraction, stimulus transforms.

torch is imported inside functions so that ``nnbrain --help`` stays fast.
"""
