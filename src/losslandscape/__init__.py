"""Loss-landscape geometry of deep networks: scans, mining and Hessian measures around checkpoints."""

__version__ = "0.1.0"
