"""Acting through the cluster's scheduler: Slurm drains, Kubernetes conditions and taints, a
fleet-wide disruption budget with a circuit breaker, and which job each fault hit."""
