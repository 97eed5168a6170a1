"""The experiments built on evaluation and inference: the method comparison, steering and
its judges, attribution, the emotion directions and their tests, and the neuron cards."""
