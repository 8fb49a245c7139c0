"""Developer tools that are not deployed: the router's training."""
