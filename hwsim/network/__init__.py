"""The network fabric: topologies, routes, link-sharing models, and the cluster systems run on.

| module      | what                                                                     |
|-------------|--------------------------------------------------------------------------|
| topology    | switch, ring, fully connected, torus, fat tree, multi-dimensional; routes |
| sharing     | link-sharing models: ideal, flow (max-min fair), store-and-forward        |
| fabric      | a topology's links as hardware, a sharing model, what each link carried   |
| cluster     | the fabric built from a scenario, and the devices on its NPUs             |
"""

from hwsim.network.cluster import Cluster, build_topology, fabric_npus
from hwsim.network.fabric import Fabric
from hwsim.network.sharing import MODELS, max_min
from hwsim.network.topology import FabricError, Topology

__all__ = ["MODELS", "Cluster", "Fabric", "FabricError", "Topology", "build_topology", "fabric_npus", "max_min"]
