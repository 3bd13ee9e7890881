"""Strategies 1 and 2 of Ensemble-Decoupled Architecture Search for continuous π on CTR
ensembles: the closed-form feature-bagging rate (``closed_form``) and constrained gradient
search over per-field inclusion probabilities (``differentiable``); ``common`` trains what both
measure (dual learners, true M-ensembles). Strategy 3 (LLM proposals + the rule) is ``agent.loop``."""
