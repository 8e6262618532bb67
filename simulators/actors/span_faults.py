"""Line faults an E1 exchange actor (PRI or R2) can put on its span: controlled slips and
line-error counts on the virtual card. The actor provides `cards`, `span` and note()."""
from __future__ import annotations

from simulators.cards import ERROR_WORDS

from . import ActorError


class SpanFaults:
    def slip(self, count: int = 1) -> None:
        """Controlled slips on the span (counted by the card; the audio is not touched)."""
        try:
            self.cards.slip(self.span, count)
        except ValueError as e:
            raise ActorError(str(e)) from None
        self.note(f"{count} slips")

    def errors(self, **counts: int) -> None:
        """Line errors on the span, by scenario word: crc4, bpv, frame, ebit, fas."""
        unknown = sorted(set(counts) - set(ERROR_WORDS))
        if unknown:
            raise ActorError(f"errors: unknown counter {unknown[0]!r} (known: "
                             f"{', '.join(ERROR_WORDS)})")
        try:
            self.cards.count_errors(self.span, **{ERROR_WORDS[k]: n for k, n in counts.items()})
        except ValueError as e:
            raise ActorError(str(e)) from None
        self.note("line errors " + ", ".join(f"{k} {n}" for k, n in counts.items() if n))
