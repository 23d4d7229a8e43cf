"""A simulated avatar driving one eva-hub session.

It presents slides and speaks about each, answers participants' questions
after a short "thinking" delay (a fake STT → LLM → TTS pipeline whose stage
latencies it reports as metrics), obeys operators (takeover: its own
answers are held by the hub for approval; ``say`` commands are spoken and
answered with a response carrying the command id; ``goto_slide``,
``pause``, ``resume``), and stops speaking at once on an emergency stop.

    python examples/renderer.py --url ws://127.0.0.1:8080/v1/ws \\
        --session <id> --token dev:renderer:avatar-1

Stop it with Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import time
from contextlib import suppress

from eva_hub import EmergencyStop, Renderer
from eva_hub.types import CommandEvent, QuestionEvent, ReleaseEvent, TakeoverEvent

log = logging.getLogger("avatar")

SCRIPT = [
    "Welcome! Today we look at how the product works.",
    "First, the problem we solve and who has it.",
    "Next, how the pipeline turns speech into answers.",
    "Then pricing: a free month, then a flat monthly fee.",
    "Finally, the roadmap for the next two quarters.",
]


class Avatar:
    def __init__(self, r: Renderer, *, thinking_s: float, slide_s: float, words_per_s: float) -> None:
        self.r = r
        self.thinking_s = thinking_s
        self.slide_s = slide_s
        self.words_per_s = words_per_s
        self.slide = 0
        # Latencies of the last answer, in every metrics report.
        self.stages: dict[str, float] = {}
        self.presenting = asyncio.Event()
        self.presenting.set()
        # The utterance in progress, so a stop can cut it off.
        self.voice: asyncio.Task[None] | None = None
        r.on_question(self.answer)
        r.on_command(self.obey)
        r.on_takeover(self.taken_over)
        r.on_release(self.released)
        r.on_emergency_stop(self.emergency_stop)

    # -- speaking -----------------------------------------------------------

    async def speak(self, text: str) -> None:
        """Speaks one utterance (interrupting any other) and returns when it
        is spoken or cut off."""
        self.silence()
        voice = asyncio.ensure_future(self._utter(text))
        self.voice = voice
        await asyncio.wait([voice])

    async def _utter(self, text: str) -> None:
        try:
            await self.r.state(speaking=True)
            await asyncio.sleep(len(text.split()) / self.words_per_s)
        finally:
            if self.voice is asyncio.current_task():
                self.voice = None
            # Finished or cut off: silent now. (Fails harmlessly once closed.)
            with suppress(Exception):
                await self.r.state(speaking=False)

    def silence(self) -> None:
        if self.voice is not None:
            self.voice.cancel()
            self.voice = None

    # -- presenting ---------------------------------------------------------

    async def present(self) -> None:
        while True:
            await self.presenting.wait()
            if self.r.stopped:
                await asyncio.sleep(0.1)
                continue
            self.slide = self.slide % len(SCRIPT) + 1
            await self.r.state(slide=self.slide, topic=f"slide {self.slide}", awaiting_questions=True)
            await self.speak(SCRIPT[self.slide - 1])
            await asyncio.sleep(self.slide_s)

    async def report_metrics(self) -> None:
        """Sends one whole report: operators see only the latest report
        each second (the hub conflates them), so every report carries the
        last answer's stage latencies along with the current usage."""
        await self.r.metrics(
            **self.stages,
            cpu=round(random.uniform(0.3, 0.6), 2),
            gpu=round(random.uniform(0.5, 0.8), 2),
            memory=round(random.uniform(0.4, 0.6), 2),
            fps=30,
            component="pipeline",
        )

    async def report_periodically(self) -> None:
        while True:
            await self.report_metrics()
            await asyncio.sleep(1.0)

    # -- handlers -------------------------------------------------------------

    async def answer(self, q: QuestionEvent) -> None:
        log.info("question from %s: %s", q.get("participant_name") or q["participant_id"], q["text"])
        self.presenting.clear()
        try:
            t0 = time.monotonic()
            stt = random.uniform(0.05, 0.15) * self.thinking_s
            await asyncio.sleep(stt)
            llm = self.thinking_s
            await asyncio.sleep(llm)
            text = f"Good question about “{q['text']}”. On slide {self.slide} we cover exactly that."
            tts = random.uniform(0.1, 0.3) * self.thinking_s
            await asyncio.sleep(tts)
            total = time.monotonic() - t0
            self.stages = {
                "stt_ms": stt * 1000,
                "llm_ms": llm * 1000,
                "tts_ms": tts * 1000,
                "total_ms": total * 1000,
                "latency_ms": total * 1000,
            }
            await self.report_metrics()
            ack = await self.r.respond(q["question_id"], text, confidence=0.9, intent="faq")
            if self.r.taken_over:
                log.info("answer %s held for the operator's approval", ack.get("ref_id"))
            else:
                await self.speak(text)
        finally:
            if not self.r.taken_over:
                self.presenting.set()

    async def obey(self, cmd: CommandEvent) -> None:
        c = cmd["command"]
        log.info("command from %s: %s", cmd["operator_id"], c)
        if c["action"] == "say":
            await self.r.respond(None, c["text"], command_id=cmd["command_id"])
            await self.speak(c["text"])
        elif c["action"] == "goto_slide":
            self.slide = c["slide"]
            await self.r.state(slide=c["slide"])
        elif c["action"] == "pause":
            self.presenting.clear()
            self.silence()
        elif c["action"] == "resume":
            self.presenting.set()

    def taken_over(self, ev: TakeoverEvent) -> None:
        log.info("taken over by %s (%s): presenting paused", ev["operator_id"], ev.get("reason"))
        self.presenting.clear()

    def released(self, ev: ReleaseEvent) -> None:
        log.info("released (%s): presenting again", ev["reason"])
        self.presenting.set()

    async def emergency_stop(self, stop: EmergencyStop) -> None:
        # Silence first, report after: the hub has our ack when this returns.
        self.silence()
        self.presenting.clear()
        log.warning("EMERGENCY STOP %s: %s", stop.intervention_id, stop.reason)
        await self.r.state(speaking=False)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="ws://127.0.0.1:8080/v1/ws")
    ap.add_argument("--session", required=True)
    ap.add_argument("--token", default="dev:renderer:avatar-1")
    ap.add_argument("--codec", choices=["msgpack", "json"], default="msgpack")
    ap.add_argument("--thinking-ms", type=float, default=800)
    ap.add_argument("--slide-seconds", type=float, default=4.0)
    ap.add_argument("--words-per-second", type=float, default=3.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    r = Renderer(args.url, args.token, args.session, codec=args.codec)
    avatar = Avatar(
        r, thinking_s=args.thinking_ms / 1000, slide_s=args.slide_seconds, words_per_s=args.words_per_second
    )
    r.client.on_connection_state(lambda state, err: log.info("connection %s%s", state, f": {err}" if err else ""))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    view = await r.start()
    log.info("presenting session %s (status %s, fence %s)", view.id, view.status, r.fence)
    tasks = [asyncio.ensure_future(avatar.present()), asyncio.ensure_future(avatar.report_periodically())]
    ended = asyncio.ensure_future(r.wait_closed())
    await asyncio.wait([ended, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    if ended.done():
        log.error("connection ended: %s", ended.exception())
    else:
        ended.cancel()
        await r.close()
        log.info("closed")


if __name__ == "__main__":
    asyncio.run(main())
