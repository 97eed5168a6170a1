"""Statistical inference on the conditions' per-dialogue outcomes, without torch: intervals
and exact tests, the set-level tests against random sets, and the result tables."""
