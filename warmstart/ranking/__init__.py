"""Which source? Rank candidate sources by transferability scores computed from frozen features
of the target's train and validation images, before any fine-tuning (issue 24)."""

from .scores import DEFAULT_SCORE, SCORES, Score, ScoreInputs, register_score, score_all

__all__ = ["DEFAULT_SCORE", "SCORES", "Score", "ScoreInputs", "register_score", "score_all"]
