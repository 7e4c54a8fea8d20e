"""The benchmark's definitions: suites of held-out tasks, the baselines, the leaderboard and its
figures (``lrgym benchmark`` runs them; see ``lrgym_agents.benchmark``)."""
