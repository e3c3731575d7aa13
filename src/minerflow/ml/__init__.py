"""Machine learning: neural estimators, the training loop, the MLModel API."""
