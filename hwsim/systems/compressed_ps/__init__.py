"""Workers with compressed banks and a parameter server (M1): precision cycling over the network."""

from hwsim.systems.compressed_ps.system import CompressedPs

__all__ = ["CompressedPs"]
