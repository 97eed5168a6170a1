"""The conditions a run evaluates and what it keeps of them, without torch: the grid
(:mod:`.grid`) and the resumable store of finished conditions with their per-dialogue
correctness (:mod:`.store`)."""
