"""Kubernetes side of the edge: the objects a node's predictor is made of, and how they change."""
