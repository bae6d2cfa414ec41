"""Metrics of generative model versions (docs/generative.md), rendered at scrape time from each
engine's GenerationStats and gauges, in the same hand-formatted text as ModelMetrics."""

from __future__ import annotations

from inferd.generative.stats import LatencyHistogram
from inferd.metrics.models import _counter, _Family, escape_label
from inferd.repository.manager import ModelRepository
from inferd.runtimes.generative import GenerativeRuntime

_NS = 1e9


class GenerativeMetrics:
    def __init__(self, repository: ModelRepository) -> None:
        self._repository = repository

    def render(self) -> str:
        ttft = _Family(
            "inferd_generation_time_to_first_token_seconds",
            "histogram",
            "From a generate call to its first token reaching the stream",
        )
        itl = _Family(
            "inferd_generation_inter_token_seconds", "histogram", "Between two tokens of one stream"
        )
        generated = _counter("inferd_generation_tokens", "Tokens generated (sequences that ended)")
        prompt = _counter("inferd_generation_prompt_tokens", "Prompt tokens prefilled")
        finished = _counter("inferd_generation_sequences", "Sequences ended, by finish reason")
        refused = _counter(
            "inferd_generation_refused", "Generations refused (draining, too many waiting, queue timeout)"
        )
        active = _Family("inferd_generation_sequences_active", "gauge", "Sequences prefilling or decoding")
        waiting = _Family("inferd_generation_sequences_waiting", "gauge", "Sequences waiting for KV memory")
        kv_bytes = _Family("inferd_generation_kv_cache_bytes", "gauge", "KV cache memory held now")
        reserved = _Family(
            "inferd_generation_kv_reserved_tokens",
            "gauge",
            "KV tokens reserved by running sequences (the budget is max_tokens_in_flight)",
        )
        families = [ttft, itl, generated, prompt, finished, refused, active, waiting, kv_bytes, reserved]
        found = False
        for entry in self._repository.entries():
            for model in entry.versions.values():
                runtime = model.runtime
                if not isinstance(runtime, GenerativeRuntime):
                    continue
                found = True
                engine = runtime.engine
                stats = engine.stats
                labels = f'model="{escape_label(model.name)}",version="{escape_label(model.version)}"'
                ttft.histogram(
                    labels, _buckets(stats.time_to_first_token), stats.time_to_first_token.total_ns / _NS
                )
                itl.histogram(labels, _buckets(stats.inter_token), stats.inter_token.total_ns / _NS)
                generated.sample(labels, stats.generated_tokens)
                prompt.sample(labels, stats.prompt_tokens)
                for reason, count in sorted(stats.finished.items()):
                    finished.sample(f'{labels},reason="{reason}"', count)
                refused.sample(labels, stats.refused)
                active.sample(labels, engine.active)
                waiting.sample(labels, engine.waiting)
                kv_bytes.sample(labels, engine.kv_bytes)
                reserved.sample(labels, engine.reserved_tokens)
        if not found:
            return ""
        return "".join(line for family in families for line in family.lines)


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    bounds = [repr(bound / _NS) for bound in histogram.bounds] + ["+Inf"]
    return list(zip(bounds, map(float, histogram.cumulative()), strict=True))
