"""Every prompt, in one place: the persona agent's, synthesis, the persona pipelines' and the
judge's, and the budget that trims an agent's context to fit."""
