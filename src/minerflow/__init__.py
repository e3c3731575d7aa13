"""minerflow: the machine-learning step of particle-physics analyses.

One engine runs sampling -> training -> evaluation -> plot, step by step from the command
line or as one law workflow, with every run tracked in MLflow. Heavy libraries (torch, law,
mlflow) are imported inside the modules that need them, so ``import minerflow`` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
