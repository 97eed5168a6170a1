"""emoneuron: find the neurons in a language model that carry emotion, and prove what they do."""

__version__ = "0.1.0"
