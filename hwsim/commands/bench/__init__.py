"""`hwsim bench`: the simulator's own speed (engine, kernels, collectives, fabric, large models), as tables."""
