"""Transfer modes; importing this package registers them in this order (one file per mode)."""

# isort: off
from ..modes import finetune  # noqa: F401  (registration, listed first)
from ..modes import linear_probe  # noqa: F401
from ..modes import lp_ft  # noqa: F401
from ..modes import freeze  # noqa: F401

# isort: on
from ..modes.base import TransferMode
from ..modes.finetune import Finetune

__all__ = ["Finetune", "TransferMode"]
