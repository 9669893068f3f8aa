"""What the model said and what its tools answered since the run's trigger, as the agent
library's message dicts, so that a paused run can go on where it stopped."""

from __future__ import annotations

from typing import Any


class Transcript:
    """Follows a run's events: each model turn (its text and tool calls), then the tool results."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.messages: list[dict[str, Any]] = list((state or {}).get("messages", []))
        self.text = ""
        # A resumed run's last turn is in `messages` already; its calls still without a result stay
        # pending, so that pausing again on one of them keeps the ones after it.
        self.calls: list[dict[str, Any]] = list((state or {}).get("pending", []))
        self.answered: set[str] = set()  # calls of the last turn that have a result
        self.closed = True  # the last turn is in `messages`

    def on_text(self, text: str) -> None:
        self._open()
        self.text += text

    def on_call(self, call: Any) -> None:
        self._open()
        self.calls.append({"id": call.id, "name": call.name, "arguments": call.arguments})

    def on_result(self, result: Any) -> None:
        self._close()
        self.answered.add(result.tool_call_id)
        self.messages.append({"role": "tool", "tool_call_id": result.tool_call_id, "name": result.name,
                              "content": result.result, "is_error": result.is_error})

    def paused_state(self) -> dict[str, Any]:
        """The transcript so far and the calls of the last turn still without a result, in order."""
        self._close()
        return {"messages": self.messages, "pending": [c for c in self.calls if c["id"] not in self.answered]}

    def _open(self) -> None:
        if self.closed:  # a new model turn begins
            self.text, self.calls, self.answered, self.closed = "", [], set(), False

    def _close(self) -> None:
        if not self.closed:
            turn: dict[str, Any] = {"role": "assistant", "content": self.text}
            if self.calls:
                turn["tool_calls"] = list(self.calls)
            self.messages.append(turn)
            self.closed = True
