"""The kinds of timer on the ACD's heap (the heap itself and its firing live in router).

Each heap entry is ``(due, seq, kind, ref, epoch, extra)``: ``ref`` is an agent id for
ring no answer and wrap-up, a call id for the others; a bump of the epoch it carries
cancels it without searching the heap.
"""

RONA, RING_ALL, WRAPUP, MAX_WAIT, OVERFLOW, ANNOUNCE, STICKY, CB_RETRY = range(8)
