"""Skills and skill levels.

An agent has skills with levels 1..10 (10 = expert). A queue requires skills with a
minimum level; an agent who has every required skill at or above its minimum is a
member (unless the queue lists its members explicitly, which further restricts it).
The skill-weighted strategy prefers the agent with the highest weighted level sum.
"""
from __future__ import annotations

from .actions import AcdError

MIN_LEVEL, MAX_LEVEL = 1, 10


def validate_skills(skills, what: str = "skills") -> dict[str, int]:
    """A clean {skill: level} dict, or AcdError naming the bad entry."""
    if skills is None:
        return {}
    if not isinstance(skills, dict):
        raise AcdError(f"{what} must be a mapping of skill name to level, got {type(skills).__name__}")
    out = {}
    for name, level in skills.items():
        if not isinstance(name, str) or not name:
            raise AcdError(f"{what}: skill names must be non-empty strings, got {name!r}")
        if isinstance(level, bool) or not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
            raise AcdError(f"{what}: level of skill {name!r} must be an integer "
                           f"{MIN_LEVEL}..{MAX_LEVEL}, got {level!r}")
        out[name] = level
    return out


def qualifies(agent_skills: dict[str, int], required: dict[str, int]) -> bool:
    for name, minimum in required.items():
        if agent_skills.get(name, 0) < minimum:
            return False
    return True


def skill_score(agent_skills: dict[str, int], required: dict[str, int],
                weights: dict[str, float]) -> float:
    """Weighted level sum over the queue's skills (its weights, default 1 each).

    With no required skills and no weights the score is 0 and the strategy falls back
    on longest idle.
    """
    names = weights.keys() if weights else required.keys()
    return float(sum(agent_skills.get(n, 0) * (weights.get(n, 1.0) if weights else 1.0)
                     for n in names))


class SkillIndex:
    """skill -> agents having it, so queue membership needs no scan of all agents."""

    def __init__(self):
        self.by_skill: dict[str, set[str]] = {}

    def add(self, agent_id: str, skills: dict[str, int]) -> None:
        for name in skills:
            self.by_skill.setdefault(name, set()).add(agent_id)

    def remove(self, agent_id: str, skills: dict[str, int]) -> None:
        for name in skills:
            s = self.by_skill.get(name)
            if s is not None:
                s.discard(agent_id)

    def candidates(self, required: dict[str, int], everyone) -> "set[str] | object":
        """Agents that have the rarest required skill (all agents if none is required)."""
        if not required:
            return everyone
        sets = [self.by_skill.get(n, ()) for n in required]
        return min(sets, key=len)
