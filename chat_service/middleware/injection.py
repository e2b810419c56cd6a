"""The ``prompt_injection`` middleware: look for injection phrases before the model sees a message.

- ``block``: the agent answers with ``blockMessage`` and the model is not called.
- ``warn``: a warning is logged (which pattern, never the text) and the call goes on.
- ``sanitize``: the matched text is removed from what the model sees (the stored history keeps the original,
  so it is removed again on every later call of the conversation).

``block`` and ``warn`` look at the current turn only (the messages after the last model answer), so a
blocked message does not block the rest of the conversation. User messages are checked always, tool results
when ``checkToolResults`` is set. Patterns are case-insensitive regular expressions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage

from ai_ops_api.middleware import PromptInjectionConfig

# Each pattern needs an intent (override, leak, role switch), not just a topic: operators ask about system
# prompts, instructions, roles, modes and tokens in good faith all the time, and blocking them is a bug.
# Measured on a labelled set by benchmarks/prompt_injection.py; every benign case of that set must pass.
DEFAULT_INJECTION_PATTERNS: tuple[str, ...] = (
    # "ignore all previous instructions", "disregard the above rules", "stop following your rules" ...
    r"\b(?:ignore|disregard|forget|override|bypass|stop\s+following|(?:do\s+not|don'?t)\s+follow)\s+"
    r"(?:(?:all|any|every|the|your|my|these|those|of|previous|prior|above|earlier|preceding|system|original|"
    r"safety)\s+){0,4}(?:instructions?|prompts?|rules?|directions|guidelines|guardrails)\b",
    r"\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|above|before)",
    # Leaking the instructions: "reveal your system prompt", "what were your original instructions".
    r"\b(?:reveal|print|show|repeat|output|leak|dump|display|quote|tell\s+me|give\s+me|what\s+(?:is|are|was|were))"
    r"\s+(?:me\s+)?(?:the\s+full\s+text\s+of\s+)?(?:your|the\s+(?:hidden|original|initial|secret))\s+"
    r"(?:(?:full|entire|exact|complete|original|hidden|initial|secret|system)\s+)*(?:system\s+prompt|prompt|instructions)",
    r"\bsystem\s+prompt\s+you\s+(?:were|have\s+been)\s+given\b",
    r"\byour\s+(?:previous\s+|original\s+)?(?:instructions|rules|guidelines)\s+(?:are|have\s+been)\s+"
    r"(?:cancel+ed|void|revoked|lifted|suspended|removed|replaced)\b",
    # Role switches: "you are now DAN", "from now on you are EvilOps".
    r"\byou\s+are\s+now\s+(?:an?\s+|the\s+)?(?:in\s+(?:developer|god|DAN|jailbreak)\s+mode|unrestricted|"
    r"unfiltered|uncensored|jailbroken|DAN\b|evil|root\b|(?:cluster\s+)?admin|no\s+longer)",
    r"\bfrom\s+now\s+on,?\s+you\s+(?:are|will|must|obey|only|answer)\b",
    r"\bnew\s+instructions\s*:",
    r"\bsystem\s+override\b",
    r"\b(?:enable|enter|activate|switch\s+to|turn\s+on)\s+(?:the\s+)?(?:developer|god|jailbreak|DAN|unrestricted)\s+mode\b",
    r"\b(?:god|jailbreak|DAN)\s+mode\b",
    r"\bthis\s+is\s+a\s+jailbreak\b|^\W*jailbreak\b|\bjailbreak\s*:",
    r"\bpretend\s+(?:that\s+)?you\s+(?:have\s+no|are\s+no\s+longer\s+bound\s+by|are\s+not\s+bound\s+by|are\s+free\s+of)"
    r"\s+(?:any\s+)?(?:rules|restrictions|limits|guidelines|filters)\b",
    # Chat-template control tokens smuggled into text.
    r"<\|?im_(?:start|end)\|?>|<\|(?:system|endoftext)\|>|\[/?INST\]",
)


def compile_patterns(config: PromptInjectionConfig) -> list[re.Pattern[str]]:
    sources = [*(DEFAULT_INJECTION_PATTERNS if config.use_default_patterns else ()), *config.patterns]
    return [re.compile(source, re.IGNORECASE) for source in sources]


def _current_turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], AIMessage):
            return list(messages[index + 1 :])
    return list(messages)


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            block if isinstance(block, str) else str(block.get("text", ""))
            for block in content
            if isinstance(block, str) or (isinstance(block, dict) and block.get("type") == "text")
        ]
    return []


class PromptInjectionMiddleware(AgentMiddleware):
    """Blocks, flags or strips prompt-injection phrases in user input and (optionally) tool results."""

    def __init__(self, config: PromptInjectionConfig, *, model_name: str, logger: logging.Logger):
        super().__init__()
        self.config = config
        self.model_name = model_name
        self.logger = logger
        self.patterns = compile_patterns(config)

    def _checked(self, message: BaseMessage) -> bool:
        return isinstance(message, HumanMessage) or (
            self.config.check_tool_results and isinstance(message, ToolMessage)
        )

    def find(self, messages: Sequence[BaseMessage]) -> tuple[BaseMessage, re.Pattern[str]] | None:
        """The first checked message of the current turn matching a pattern, with that pattern."""
        for message in _current_turn(messages):
            if not self._checked(message):
                continue
            for text in _texts(message.content):
                for pattern in self.patterns:
                    if pattern.search(text):
                        return message, pattern
        return None

    def _sanitized(self, message: AnyMessage) -> AnyMessage:
        if not self._checked(message):
            return message
        content = message.content
        if isinstance(content, str):
            new_content: Any = self._strip(content)
        elif isinstance(content, list):
            new_content = [
                {**block, "text": self._strip(str(block.get("text", "")))}
                if isinstance(block, dict) and block.get("type") == "text"
                else (self._strip(block) if isinstance(block, str) else block)
                for block in content
            ]
        else:
            return message
        if new_content == content:
            return message
        return message.model_copy(update={"content": new_content})

    def _strip(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub("", text)
        return text

    def _log(self, message: BaseMessage, pattern: re.Pattern[str], action: str) -> None:
        # The pattern, not the text: the text is the user's (or a tool's) and may be sensitive.
        self.logger.warning(
            "prompt injection suspected in a %s message (action=%s, model=%s, pattern=%r)",
            message.type,
            action,
            self.model_name,
            pattern.pattern,
            extra={
                "event": "prompt_injection",
                "action": action,
                "model": self.model_name,
                "pattern": pattern.pattern,
                "message_type": message.type,
            },
        )

    def _decide(self, request: ModelRequest[Any]) -> tuple[ModelRequest[Any] | None, AIMessage | None]:
        """(the request to send, or None) and (the blocking answer, or None)."""
        if self.config.action == "sanitize":
            found = self.find(request.messages)
            if found is not None:
                self._log(*found, action="sanitize")
            messages = [self._sanitized(m) for m in request.messages]
            return request.override(messages=messages), None
        found = self.find(request.messages)
        if found is None:
            return request, None
        self._log(*found, action=self.config.action)
        if self.config.action == "warn":
            return request, None
        answer = AIMessage(
            content=self.config.block_message,
            response_metadata={"ai_ops": {"blocked": "prompt_injection"}},
        )
        return None, answer

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any] | AIMessage:
        to_send, answer = self._decide(request)
        if to_send is None:
            assert answer is not None
            return ModelResponse(result=[answer])
        return handler(to_send)

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage:
        to_send, answer = self._decide(request)
        if to_send is None:
            assert answer is not None
            return ModelResponse(result=[answer])
        return await handler(to_send)
