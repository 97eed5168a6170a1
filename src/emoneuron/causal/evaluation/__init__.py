"""How the model is asked and changed: the classifier with its prompts and answer formats,
the interventions on neurons and on the residual stream, the label-free probe, and the
executor that evaluates conditions with them."""
