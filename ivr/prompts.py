"""From the interpreter's Prompts to files cardd can play.

A Prompt with a file is played as it is (cardd's PromptCache converts any format to the
line law once); a Prompt with text only is rendered by the TTS cache. `prewarm` renders
every text a flow set can say before the first call (catalog prompts in each language,
and the Mandarin number words), so that calls rarely wait for espeak-ng.
"""
from __future__ import annotations

import os
from typing import Iterable

from .flow import FlowSet
from .interpreter import Prompt
from .speech import all_fragment_words
from .tts import Tts, TtsError


class PromptResolver:
    def __init__(self, tts: Tts):
        self.tts = tts

    def ready(self, prompt: Prompt) -> bool:
        """True when the file is there already (no rendering needed)."""
        return bool(prompt.file) or self.tts.path_for(prompt.text, prompt.lang).is_file()

    def file(self, prompt: Prompt) -> str:
        if prompt.file:
            if not os.path.isfile(prompt.file):
                raise TtsError(f"prompt file {prompt.file} does not exist")
            return prompt.file
        return str(self.tts.render(prompt.text, prompt.lang))

    def files(self, prompts: Iterable[Prompt]) -> list[str]:
        return [self.file(p) for p in prompts]

    def prewarm(self, flows: FlowSet) -> int:
        """Render all static texts of the flows; returns how many texts were checked."""
        todo: set[tuple[str, str]] = set()
        for flow in flows.flows.values():
            for p in flow.prompts.values():
                for lang, entry in p.by_lang.items():
                    if entry.file or not entry.text.strip():
                        continue
                    langs = flow.languages if lang == "*" else [lang]
                    todo.update((entry.text, l) for l in langs)
            if "zh" in flow.languages and flow.say_mode == "fragments":
                todo.update((w, "zh") for w in all_fragment_words())
        for text, lang in sorted(todo):
            self.tts.render(text, lang)
        return len(todo)
