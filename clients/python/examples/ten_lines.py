"""The README's ten-line renderer, kept here so the type checker and the
tests read it.

    python examples/ten_lines.py <session-id> [ws://127.0.0.1:8080/v1/ws]
"""

import asyncio
import sys

from eva_hub import Renderer


async def main(url: str, session_id: str) -> None:
    async with Renderer(url, "dev:renderer:avatar-1", session_id) as r:  # connects, joins, goes active
        r.on_question(lambda q: r.respond(q["question_id"], f"You asked: {q['text']}"))
        r.on_emergency_stop(lambda stop: print("stop speaking now:", stop.reason))
        await r.state(slide=1, speaking=True)
        await r.metrics(stt_ms=120, llm_ms=640, tts_ms=210, total_ms=970)
        await r.wait_closed()  # reconnects and resumes by itself until closed for good


if __name__ == "__main__":
    asyncio.run(main(sys.argv[2] if len(sys.argv) > 2 else "ws://127.0.0.1:8080/v1/ws", sys.argv[1]))
