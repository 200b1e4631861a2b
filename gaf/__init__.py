"""gaf: generative attention (GAF) for video action analysis.

Importing ``gaf`` is cheap: it does not import torch. Heavy modules
(models, engine) import torch themselves when they are used.
"""

__version__ = "0.1.0"

from gaf.errors import GafError

__all__ = ["GafError", "__version__"]
