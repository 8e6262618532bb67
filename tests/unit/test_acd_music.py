"""Music on hold against cardd's prompt rules, in the orders a loaded machine makes: the real
call model with the AcdService on it, an injected clock, and cardd's prompt semantics
(drivers.media.prompts.Player: a new PlayPrompt replaces what the line plays, StopMedia
stops it, and each replaced or stopped prompt reports PromptDone(interrupted) a tick later,
after ctid may already have acted on a request)."""
from hotline_proto import cardd_pb2

from test_acd_service import cmds
from test_acd_transfer import bench, transfer
from test_acd_consult_queue import complete, consult


class CarddPrompts:
    """What cardd's prompt player does with the commands ctid sends a line: the PromptDones
    it owes, in order, and how often the music was started."""

    def __init__(self, channel=5):
        self.channel = channel
        self.playing = False
        self.owed: list[cardd_pb2.PromptDone] = []
        self.starts = 0

    def take(self, out):
        for ch, kind in cmds(out):
            if ch != self.channel:
                continue
            if kind in ("play_prompt", "stop_media", "hangup") and self.playing:
                self.owed.append(cardd_pb2.PromptDone(interrupted=True))
            if kind == "play_prompt":
                self.playing, self.starts = True, self.starts + 1
            elif kind in ("stop_media", "hangup"):
                self.playing = False
        return out

    def report(self, b, t, rounds=20):
        """cardd reports what it owes, and what ctid's answers make it owe, a tick apart."""
        for i in range(rounds):
            if not self.owed:
                return
            self.take(b.ev(t + 0.02 * i, self.channel, prompt_done=self.owed.pop(0)))
        raise AssertionError(f"the music restarts on every PromptDone ({self.starts} starts)")


def test_a_quick_transfer_to_a_queue_starts_its_music_once(tmp_path):
    """The agent transfers the caller before cardd reported the hotline music stopped on
    answer: that late PromptDone must not restart billing's music (nor set off a loop of
    restarts, each replacing the last: the caller would hear its first blocks, over and over)."""
    b = bench(tmp_path)
    card = CarddPrompts()
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")        # billing: nobody ready yet
    call = card.take(b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000"))).events[0].call_id
    card.take(b.answer(3, 1))                              # 1001 answers: the music stops
    assert card.owed and not card.playing
    card.take(transfer(b, 3.04, call, "ext:8001", "queue:billing"))   # before that PromptDone
    assert card.playing and card.starts == 2               # hotline's music, then billing's
    card.report(b, 3.06)
    assert card.starts == 2 and card.playing               # billing's music plays on
    # it still loops when it comes to its end
    card.take(b.ev(19.1, 5, prompt_done=cardd_pb2.PromptDone()))
    assert card.starts == 3


def test_a_quick_transfer_after_a_consultation_starts_the_music_once(tmp_path):
    """Same on TransferCall while the consultation still waits in billing: the caller takes
    its place and hears billing's music, once, whatever cardd reports late."""
    b = bench(tmp_path)
    card = CarddPrompts()
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")        # billing: nobody ready
    c1 = card.take(b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000"))).events[0].call_id
    card.take(b.answer(3, 1))
    c2 = consult(b, 3.02, c1, "queue:billing")
    card.take(b.last)
    card.take(complete(b, 3.04, c1, c2))                   # before the stopped music reports
    assert card.playing
    starts = card.starts
    card.report(b, 3.06)
    assert card.starts == starts and card.playing
    card.take(b.ev(19.1, 5, prompt_done=cardd_pb2.PromptDone()))
    assert card.starts == starts + 1
