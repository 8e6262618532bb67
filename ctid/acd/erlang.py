"""Erlang C and Erlang A: the queueing formulas the simulation is checked against.

Erlang C (M/M/N, callers wait forever), with offered load A = arrival rate x AHT:
  P(wait) = C(N, A) = N*B / (N - A*(1 - B))    where B is Erlang B, computed stably
  ASA     = C * AHT / (N - A)
  SL(t)   = 1 - C * exp(-(N - A) * t / AHT)
Erlang A (M/M/N+M, exponential patience with mean 1/theta) is solved here directly
as the birth-death chain of the number of calls in the system.
"""
from __future__ import annotations

import math


def erlang_b(n: int, a: float) -> float:
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(n: int, a: float) -> float:
    """Probability that a caller waits at all (1.0 when the load reaches N)."""
    if a >= n:
        return 1.0
    b = erlang_b(n, a)
    return n * b / (n - a * (1 - b))


def erlang_c_asa(n: int, a: float, aht_s: float) -> float:
    if a >= n:
        return math.inf
    return erlang_c(n, a) * aht_s / (n - a)


def erlang_c_service_level(n: int, a: float, aht_s: float, t_s: float) -> float:
    if a >= n:
        return 0.0
    return 1.0 - erlang_c(n, a) * math.exp(-(n - a) * t_s / aht_s)


def erlang_a(n: int, lam: float, mu: float, theta: float, tol: float = 1e-12) -> dict:
    """M/M/N+M: rates per second. Returns p_wait, p_abandon, mean queue length."""
    if theta <= 0:
        raise ValueError("theta (1/mean patience) must be > 0 for Erlang A")
    p = [1.0]
    total = 1.0
    k = 0
    while True:
        k += 1
        death = min(k, n) * mu + max(0, k - n) * theta
        p.append(p[-1] * lam / death)
        total += p[-1]
        if k > n and p[-1] < p[-2] and p[-1] < tol * total:
            break
        if k > 10_000_000:
            raise ValueError("Erlang A chain does not converge (patience too long for this load)")
    total = sum(p)
    pi = [x / total for x in p]
    p_wait = sum(pi[n:])
    lq = sum((k - n) * pi[k] for k in range(n, len(pi)))
    return {"p_wait": p_wait, "p_abandon": theta * lq / lam, "queue_length": lq}
