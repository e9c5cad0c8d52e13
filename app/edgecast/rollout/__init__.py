"""Rollouts: bundles moved into nodes' model stores, and predictors switched to them."""
