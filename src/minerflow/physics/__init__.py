"""Physics on arrays: morphing, parameter points, toy simulator, sampling, limits, Fisher info.

No files, tasks or tracking here: plain numpy/scipy (and torch where gradients are needed).
"""
