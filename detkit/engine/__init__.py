"""Training engine: matcher, losses, optimiser groups, schedule, EMA, distributed helpers and the loop."""
