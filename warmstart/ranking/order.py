"""The ranking itself, pure: candidates ordered by one score (higher first; a candidate the
score does not apply to ranks last; ties keep the order given), the chosen one, the top M the
protocol keeps and the pruned rest, as the verdict names them. Decided on validation only: the
scores are computed from the k-shot train and validation images (``ranking.features``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CandidateScore:
    """One candidate's scores (higher = better; None: not applicable) and what they cost."""

    name: str  # ``<spec>``, or ``<spec> × <strategy>`` for a dataset pretrained here
    spec: str
    label: str
    provider: str
    scores: dict[str, float | None]
    extract_seconds: float  # frozen features of the train and validation images
    pretrain_seconds: float = 0.0  # the source's pretraining stage (0: weights, or reused)
    pretrain_reused: bool = False
    images: dict[str, int] = field(default_factory=dict)  # train, val: what was scored

    def to_dict(self) -> dict:
        return {**self.__dict__, "scores": dict(self.scores), "images": dict(self.images)}

    @classmethod
    def from_dict(cls, data: dict) -> CandidateScore:
        return cls(**data)


@dataclass(frozen=True)
class Ranking:
    score: str  # the score that ranks
    rows: tuple[CandidateScore, ...]  # best first

    @property
    def chosen(self) -> CandidateScore:
        return self.rows[0]

    def top(self, m: int) -> tuple[CandidateScore, ...]:
        return self.rows[:m]

    def pruned(self, m: int) -> tuple[CandidateScore, ...]:
        return self.rows[m:]

    def value(self, row: CandidateScore) -> float | None:
        return row.scores.get(self.score)

    def to_dict(self) -> dict:
        """The ranked list, best first, with each candidate's spec and scores (``--json``)."""
        return {
            "score": self.score,
            "chosen": self.chosen.name,
            "line": chosen_line(self),
            "ranked": [{"rank": i + 1, **r.to_dict()} for i, r in enumerate(self.rows)],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Ranking:
        rows = tuple(
            CandidateScore.from_dict({k: v for k, v in r.items() if k != "rank"})
            for r in data["ranked"]
        )
        return cls(data["score"], rows)


def _key(score: str, row: CandidateScore) -> float:
    value = row.scores.get(score)
    return -math.inf if value is None or math.isnan(value) else float(value)


def rank(rows: list[CandidateScore], score: str) -> Ranking:
    """``rows`` ordered by ``score``, best first (stable: ties keep the order given)."""
    return Ranking(score, tuple(sorted(rows, key=lambda r: -_key(score, r))))


def fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4g}"


def chosen_line(ranking: Ranking) -> str:
    return f"chosen: {ranking.chosen.name}, by {ranking.score}, on validation"


def pruned_line(ranking: Ranking, m: int) -> str:
    """What the verdict says about the candidates the ranking left out of the protocol."""
    kept = ", ".join(r.name for r in ranking.top(m))
    cut = ", ".join(
        f"{r.name} ({ranking.score} {fmt(ranking.value(r))})" for r in ranking.pruned(m)
    )
    return (
        f"ranked on validation by {ranking.score}; kept the top {m}: {kept}; "
        f"pruned: {cut or 'none'}"
    )
