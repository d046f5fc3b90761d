"""Hospital side of a training round (DESIGN.md §2.3 steps 2-3, 6): `HospitalClient`, `follow`."""

from .client import HospitalClient, Prepared, RoundOutcome, RoundRefused, model_spec_of, train_config_of
from .follow import follow
from .state import HospitalState, RoundState, StateError

__all__ = ["HospitalClient", "HospitalState", "Prepared", "RoundOutcome", "RoundRefused", "RoundState",
           "StateError", "follow", "model_spec_of", "train_config_of"]
