"""The learners: REPS (the paper's), CMA-ES, random search (all behind the ask/tell protocol of
:mod:`lrgym_agents.learners.asktell`) and the Stable-Baselines3 learners
(:mod:`lrgym_agents.learners.sb3`)."""
