"""Music on hold against cardd's prompt rules, in the orders a loaded machine makes: the real
call model with the AcdService on it, an injected clock, and cardd's prompt semantics
(drivers.media.prompts.Player: a new PlayPrompt replaces what the line plays, StopMedia
stops it, and each replaced or stopped prompt reports PromptDone(interrupted) a tick later,
after ctid may already have acted on a request; every PromptDone echoes its PlayPrompt's id)."""
from hotline_proto import cardd_pb2

from ctid.acd import QueueConfig
from test_acd_service import Bench, cmd, cmds
from test_acd_transfer import bench, transfer
from test_acd_consult_queue import complete, consult


class CarddPrompts:
    """What cardd's prompt player does with the commands ctid sends a line: the PromptDones
    it owes, in order, and how often the music was started."""

    def __init__(self, channel=5):
        self.channel = channel
        self.playing = 0                   # the id of the prompt playing (0: none)
        self.owed: list[cardd_pb2.PromptDone] = []
        self.starts = 0

    def take(self, out):
        for _, c in out.commands:
            kind = c.WhichOneof("kind")
            if c.channel != self.channel:
                continue
            if kind in ("play_prompt", "stop_media", "hangup") and self.playing:
                self.owed.append(cardd_pb2.PromptDone(interrupted=True, id=self.playing))
            if kind == "play_prompt":
                assert c.play_prompt.id, "the ACD's prompts carry an id"
                self.playing, self.starts = c.play_prompt.id, self.starts + 1
            elif kind in ("stop_media", "hangup"):
                self.playing = 0
        return out

    def plays_out(self):
        """The prompt playing comes to its end: cardd owes its PromptDone, not interrupted."""
        self.owed.append(cardd_pb2.PromptDone(id=self.playing))
        self.playing = 0

    def ends(self, b, t):
        """The prompt playing comes to its end and cardd reports it at once."""
        self.plays_out()
        return self.take(b.ev(t, self.channel, prompt_done=self.owed.pop()))

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
    card.ends(b, 19.1)
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
    card.ends(b, 19.1)
    assert card.starts == starts + 1


def test_music_that_played_out_as_the_agent_answered_does_not_restart_the_next_queues(tmp_path):
    """The hotline music reaches its end just as the agent answers, and the agent transfers
    the caller to billing before cardd's PromptDone for it (played out, not interrupted)
    comes: that PromptDone is the hotline music's, not billing's; billing's music must not
    start over (only the id tells them apart: both ended, neither was stopped)."""
    b = bench(tmp_path)
    card = CarddPrompts()
    b.agent(1, "1002", "not_ready")
    b.agent(1, "1003", "login", reason="not_ready")        # billing: nobody ready yet
    call = card.take(b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000"))).events[0].call_id
    card.plays_out()                                       # hotline's music ends ...
    card.take(b.answer(3, 1))                              # ... as 1001 answers
    card.take(transfer(b, 3.04, call, "ext:8001", "queue:billing"))
    assert card.playing and card.starts == 2
    billing = card.playing
    card.report(b, 3.06)                                   # hotline's PromptDone, late
    assert card.starts == 2 and card.playing == billing    # billing's music plays on
    out = card.ends(b, 19.1)                               # billing's music loops at its end
    assert card.starts == 3 and cmd(out, 5, "play_prompt").play_prompt.files


def test_a_failed_music_prompt_does_not_restart_at_once(tmp_path):
    """cardd refuses the music (ctid reports that as its PromptDone, interrupted, with its
    id): the ACD does not send it again straight away (it would fail again, in a loop)."""
    b = bench(tmp_path)
    card = CarddPrompts()
    b.agent(1, "1001", "not_ready")
    out = card.take(b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000")))
    music = cmd(out, 5, "play_prompt")
    assert music.play_prompt.id == card.playing
    from ctid.cardd_link import failure_event
    failed = failure_event(music, "prompt file missing")
    assert failed.prompt_done.id == music.play_prompt.id and failed.prompt_done.interrupted
    card.playing = 0                                       # nothing plays on the line
    out = card.take(b.ev(2.1, 5, prompt_done=failed.prompt_done))
    assert "play_prompt" not in [k for _, k in cmds(out)] and card.starts == 1




def test_a_failed_announcement_goes_back_to_the_music(tmp_path):
    """An announcement cardd refuses ends (interrupted, its id): the music comes back at
    once; only a failed music waits for the next announcement."""
    from ctid.cardd_link import failure_event
    q = QueueConfig("hotline", members=("1001",), announce_first_s=10, announce_every_s=30)
    b = Bench(tmp_path, queues=[q])
    card = CarddPrompts()
    b.agent(1, "1001", "not_ready")
    card.take(b.ev(2, 5, incoming=cardd_pb2.Incoming(ani="13800138000")))
    announcement = cmd(card.take(b.tick(12.05)), 5, "play_prompt")
    assert "position-beeps-1-" in announcement.play_prompt.files[0]
    card.report(b, 12.07)                                  # the music, replaced
    failed = failure_event(announcement, "prompt file missing").prompt_done
    card.playing = 0                                       # it never played
    out = card.take(b.ev(12.1, 5, prompt_done=failed))
    assert cmd(out, 5, "play_prompt").play_prompt.files == [b.audio.music_file]
    assert card.starts == 3 and card.playing

