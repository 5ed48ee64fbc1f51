"""Online training (M3): prediction workers, training workers, real-time and full updates."""

from hwsim.systems.online.system import Online

__all__ = ["Online"]
