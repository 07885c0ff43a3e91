"""Op families; importing this package fills the rule tables in `tables`."""

from . import elementwise, index, layout, linalg, reduce  # noqa: F401
from .tables import EVALUATE, NOT_DIFFERENTIABLE, SHAPE, VJP, all_ops  # noqa: F401
