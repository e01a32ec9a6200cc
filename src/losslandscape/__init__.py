"""Loss-landscape geometry of deep networks: scans, mining and Hessian measures around checkpoints.

From Python (no Hydra): ``losslandscape.scan``, ``losslandscape.hessian``, ``losslandscape.mine``
and ``losslandscape.objective`` (see :mod:`losslandscape.api`); losses in :mod:`losslandscape.losses`.
"""

__version__ = "0.1.0"

from losslandscape import losses
from losslandscape.api import hessian, mine, objective, random_directions, scan

__all__ = ["hessian", "losses", "mine", "objective", "random_directions", "scan"]
