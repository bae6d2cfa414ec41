"""The continuous-batching engine on the tiny decoder, through a runtime loaded as the server loads it:
batched output equals one-at-a-time output, seeded sampling ignores batch companions, stop strings,
max_tokens, cancellation frees KV memory, waiting and refusal under the budget, validation, drain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferd.errors import InvalidRequest, RateLimited, Unavailable
from inferd.generative.backend import open_decoder
from inferd.generative.contract import ChatMessage, SamplingParams, TokenEvent
from inferd.generative.engine import Engine
from inferd.generative.files import read_model_files
from inferd.model_config import GenerativeOptions, ModelConfig
from inferd.runtimes.generative import GenerativeRuntime
from inferd.runtimes.registry import create_runtime

GREEDY = SamplingParams(max_tokens=24, temperature=0)
PROMPTS = [
    "Hello",
    "The capital of France is",
    "Continuous batching advances every running sequence " * 6,
    "\U0001f600 caf\u00e9",
]


def load(version_dir: Path, **options: Any) -> GenerativeRuntime:
    config = ModelConfig.model_validate({"platform": "generative", "generative": options})
    runtime = create_runtime(version_dir / "model.onnx", config)
    assert isinstance(runtime, GenerativeRuntime)
    return runtime


@pytest.fixture
def runtime(tiny_version: Path) -> Iterator[GenerativeRuntime]:
    loaded = load(tiny_version, prefill_chunk=16)
    yield loaded
    loaded.close()


async def collect(runtime: GenerativeRuntime, prompt: str, params: SamplingParams) -> list[TokenEvent]:
    return [event async for event in runtime.generator.generate(prompt, params, "test")]


def tokens(events: list[TokenEvent]) -> list[int]:
    return [token for event in events for token in event.token_ids]


def text(events: list[TokenEvent]) -> str:
    return "".join(event.text for event in events)


def test_batched_greedy_output_equals_one_sequence_at_a_time(runtime: GenerativeRuntime) -> None:
    async def main() -> None:
        alone = [await collect(runtime, prompt, GREEDY) for prompt in PROMPTS]
        together = await asyncio.gather(*(collect(runtime, prompt, GREEDY) for prompt in PROMPTS))
        assert [tokens(e) for e in together] == [tokens(e) for e in alone]
        assert [text(e) for e in together] == [text(e) for e in alone]
        # Sequences joining a batch that is already decoding (after 5 steps), long prompts prefilled
        # in chunks of 16 tokens between decode steps.
        first = asyncio.ensure_future(
            collect(runtime, PROMPTS[0], SamplingParams(max_tokens=60, temperature=0))
        )
        while runtime.engine.stats.steps < 5:
            await asyncio.sleep(0.001)
        joined = await asyncio.gather(*(collect(runtime, prompt, GREEDY) for prompt in PROMPTS[1:]))
        assert [tokens(e) for e in joined] == [tokens(e) for e in alone[1:]]
        long_alone = await collect(runtime, PROMPTS[0], SamplingParams(max_tokens=60, temperature=0))
        assert tokens(await first) == tokens(long_alone)

    asyncio.run(main())


def test_allow_spinning_reaches_the_session_and_changes_no_token(
    tiny_version: Path, runtime: GenerativeRuntime
) -> None:
    spinning = load(tiny_version, prefill_chunk=16, allow_spinning=True)
    try:
        for loaded, want in ((runtime, "0"), (spinning, "1")):
            options = loaded.engine._decoder._session.get_session_options()  # type: ignore[attr-defined]
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == want
        for prompt in PROMPTS[:2]:
            alone = asyncio.run(collect(runtime, prompt, GREEDY))
            assert tokens(asyncio.run(collect(spinning, prompt, GREEDY))) == tokens(alone)
    finally:
        spinning.close()


def test_events_count_tokens_and_max_tokens_ends_with_length(runtime: GenerativeRuntime) -> None:
    events = asyncio.run(collect(runtime, "Hello", SamplingParams(max_tokens=7, temperature=0)))
    assert events[-1].finish_reason in ("length", "stop")
    if events[-1].finish_reason == "length":
        assert len(events) == 7
    assert [e.completion_tokens for e in events] == list(range(1, len(events) + 1))
    assert all(e.finish_reason is None for e in events[:-1])
    assert events[0].prompt_tokens == runtime.generator.count_tokens("Hello")


def test_a_seed_gives_the_same_tokens_whatever_runs_beside_it(runtime: GenerativeRuntime) -> None:
    seeded = SamplingParams(max_tokens=30, temperature=1.0, top_p=0.95, top_k=50, seed=1234)

    async def main() -> None:
        alone = tokens(await collect(runtime, PROMPTS[1], seeded))
        companions = [SamplingParams(max_tokens=40, temperature=1.3, seed=s) for s in range(5)]
        together = await asyncio.gather(
            collect(runtime, PROMPTS[1], seeded),
            *(collect(runtime, p, c) for p, c in zip(PROMPTS * 2, companions, strict=False)),
        )
        assert tokens(together[0]) == alone
        other = tokens(
            await collect(runtime, PROMPTS[1], SamplingParams(max_tokens=30, temperature=1.0, seed=99))
        )
        assert other != alone

    asyncio.run(main())


def test_streamed_text_is_the_decoded_tokens_in_whole_characters(runtime: GenerativeRuntime) -> None:
    tokenizer = runtime.generator._tokenizer

    async def main() -> None:
        for seed in range(4):
            events = await collect(
                runtime, "\U0001f600", SamplingParams(max_tokens=40, temperature=2.0, seed=seed)
            )
            decoded = tokenizer.decode(tokens(events), skip_special_tokens=True)
            streamed = text(events)
            # Bytes of a character the last token left incomplete are never streamed.
            assert decoded.rstrip("\ufffd") == streamed.rstrip("\ufffd")
            assert all(isinstance(e.text, str) for e in events)
            for event in events:
                event.text.encode("utf-8")  # never a lone surrogate or a split character

    asyncio.run(main())


def test_stop_strings_end_the_text_before_them_even_split_across_tokens(runtime: GenerativeRuntime) -> None:
    async def main() -> None:
        plain = await collect(runtime, PROMPTS[1], SamplingParams(max_tokens=40, temperature=0))
        full = text(plain)
        pieces = [e.text for e in plain if e.text]
        assert len(pieces) >= 4, full
        # A stop string made of the end of one token's text and the start of the next one's.
        boundary = len(pieces[0]) + len(pieces[1])
        stop = full[boundary - 1 : boundary + 1]
        expected = full[: full.find(stop)]
        stopped = await collect(
            runtime, PROMPTS[1], SamplingParams(max_tokens=40, temperature=0, stop=(stop, "\x00"))
        )
        assert text(stopped) == expected
        assert stopped[-1].finish_reason == "stop"
        assert stop not in text(stopped)

    asyncio.run(main())


def test_a_thousand_cancelled_sequences_leak_no_kv_memory(tiny_version: Path) -> None:
    runtime = load(tiny_version)
    engine = runtime.engine

    async def main() -> None:
        for _ in range(10):
            streams = [
                runtime.generator.generate(PROMPTS[i % 4], SamplingParams(max_tokens=200, temperature=0), "c")
                for i in range(100)
            ]
            # Some read a token first (decoding when cancelled); the others go while waiting or
            # prefilling.
            for index, stream in enumerate(streams):
                if index % 10 == 0:
                    await stream.__anext__()
                await stream.aclose()
        deadline = asyncio.get_running_loop().time() + 60
        # Nothing running, nothing waiting, and no KV memory or reservation left behind.
        while engine.active or engine.waiting or engine.kv_bytes or engine.reserved_tokens:
            assert asyncio.get_running_loop().time() < deadline, (engine.kv_bytes, engine.reserved_tokens)
            await asyncio.sleep(0.01)
        assert engine.stats.finished.get("cancelled", 0) >= 40
        # The engine still serves after it all.
        assert (await collect(runtime, "Hello", GREEDY))[-1].finish_reason is not None

    try:
        asyncio.run(main())
    finally:
        runtime.close()


def test_a_dropped_stream_is_cancelled(runtime: GenerativeRuntime) -> None:
    async def main() -> None:
        stream = runtime.generator.generate("Hello", SamplingParams(max_tokens=400, temperature=0), "d")
        await stream.__anext__()
        del stream  # a front-end whose client vanished lets go of the iterator
        deadline = asyncio.get_running_loop().time() + 60
        while runtime.engine.active or runtime.engine.kv_bytes:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)

    asyncio.run(main())


def test_sequences_wait_for_kv_memory_and_are_refused_past_the_timeout(tiny_version: Path) -> None:
    long_run = SamplingParams(max_tokens=300, temperature=0)
    runtime = load(tiny_version, max_num_seqs=1, queue_timeout_s=0.001)
    try:

        async def timeout() -> None:
            assert (await collect(runtime, "Hello", long_run))[-1].finish_reason == "length"
            holder = runtime.generator.generate("Hello", long_run, "holder")
            await holder.__anext__()
            # The holder decodes 299 more steps: the waiter's 1 ms passes long before a slot frees up.
            with pytest.raises(Unavailable, match="queue_timeout_s"):
                await runtime.generator.generate("Hello", GREEDY, "waiter").__anext__()
            assert len([e async for e in holder]) == 299

        asyncio.run(timeout())
    finally:
        runtime.close()
    runtime = load(tiny_version, max_num_seqs=1, max_waiting=1)
    try:

        async def waits() -> None:
            holder = runtime.generator.generate("Hello", long_run, "holder")
            await holder.__anext__()
            waiter = runtime.generator.generate("Hello", GREEDY, "waiter")
            with pytest.raises(RateLimited, match="max_waiting"):
                runtime.generator.generate("Hello", GREEDY, "third")
            assert runtime.engine.waiting == 1
            await holder.aclose()  # frees the slot: the waiter runs
            assert [e async for e in waiter][-1].finish_reason is not None

        asyncio.run(waits())
    finally:
        runtime.close()


@pytest.mark.parametrize(
    ("prompt", "params", "message"),
    [
        ("word " * 600, GREEDY, "context is 512 tokens"),
        ("", GREEDY, "empty"),
        ("Hello", SamplingParams(max_tokens=0), "max_tokens"),
        ("Hello", SamplingParams(max_tokens=100_000), "max_tokens"),
        ("Hello", SamplingParams(temperature=-1), "temperature"),
        ("Hello", SamplingParams(temperature=float("nan")), "temperature"),
        ("Hello", SamplingParams(top_p=0), "top_p"),
        ("Hello", SamplingParams(top_k=-2), "top_k"),
        ("Hello", SamplingParams(seed=-1), "seed"),
        ("Hello", SamplingParams(stop=("",)), "stop"),
        ("x" * 10_000_000, GREEDY, "context"),
    ],
)
def test_bad_requests_are_refused_before_any_event(
    runtime: GenerativeRuntime, prompt: str, params: SamplingParams, message: str
) -> None:
    async def main() -> None:
        with pytest.raises(InvalidRequest, match=message):
            runtime.generator.generate(prompt, params, "bad")

    asyncio.run(main())
    assert runtime.engine.active == runtime.engine.waiting == 0


def test_chat_template_and_malformed_messages(runtime: GenerativeRuntime) -> None:
    rendered = runtime.generator.render_chat([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert (
        rendered
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(InvalidRequest, match="role"):
        runtime.generator.render_chat([ChatMessage("wizard", "Hi")])
    with pytest.raises(InvalidRequest, match="empty"):
        runtime.generator.render_chat([])


def test_draining_refuses_new_sequences_and_finishes_running_ones(tiny_version: Path) -> None:
    runtime = load(tiny_version)

    async def main() -> None:
        running = runtime.generator.generate("Hello", SamplingParams(max_tokens=50, temperature=0), "r")
        runtime.engine.stop_accepting()
        with pytest.raises(Unavailable, match="shutting down"):
            runtime.generator.generate("Hello", GREEDY, "late")
        events = [e async for e in running]
        assert events[-1].finish_reason is not None
        await runtime.engine.idle()
        # Unloaded with a stream still open: it ends with an error, not a hang.
        runtime.engine._accepting = True
        left = runtime.generator.generate("Hello", SamplingParams(max_tokens=400, temperature=0), "l")
        await left.__anext__()
        runtime.close()
        with pytest.raises(Unavailable, match="unloaded"):
            async for _ in left:
                pass

    asyncio.run(main())


class Gate:
    """The tiny decoder, its first prefill held until ``opened`` is set (so the prompts submitted
    meanwhile are admitted together), recording the tokens each prefill execution computes."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self.opened = threading.Event()
        self.computed: list[int] = []  # rows x width of each prefill execution

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoder, name)

    def prefill_chunk(self, cache: Any, chunk: list[int], start: int) -> Any:
        assert self.opened.wait(timeout=60)
        self.computed.append(len(chunk))
        return self._decoder.prefill_chunk(cache, chunk, start)

    def prefill_many(self, prompts: list[list[int]]) -> Any:
        self.computed.append(len(prompts) * max(len(prompt) for prompt in prompts))
        return self._decoder.prefill_many(prompts)


def test_prompts_prefilled_together_stay_within_the_chunk_with_their_padding(tiny_version: Path) -> None:
    decoder = Gate(open_decoder(tiny_version / "model.onnx", threads=1))
    options = GenerativeOptions(prefill_chunk=16)
    engine = Engine("tiny", decoder, read_model_files(tiny_version), options, 512)

    async def run() -> list[list[int]]:
        greedy = SamplingParams(max_tokens=3, temperature=0)
        streams = [engine.submit(list(range(3, 13)), greedy, 3, "first")]  # held in its prefill
        await asyncio.sleep(0.1)
        # 12 + 2 + 2 real tokens fit 16, but prefilled together they would compute 3 x 12.
        for prompt in ([5] * 12, [6, 7], [8, 9]):
            streams.append(engine.submit(prompt, greedy, 3, "short"))
        decoder.opened.set()
        return [[t for event in [e async for e in stream] for t in event.token_ids] for stream in streams]

    try:
        outputs = asyncio.run(run())
    finally:
        engine.close()
    assert [len(tokens) for tokens in outputs] == [3, 3, 3, 3]
    assert decoder.computed and max(decoder.computed) <= 16
