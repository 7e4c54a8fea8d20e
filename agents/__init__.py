"""Agents that solve lrgym's environments (REPS and baselines)."""
