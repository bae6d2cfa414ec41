"use strict";
// inferd status page: polls /dashboard/data and draws rates, latency percentiles and batch sizes, and
// the token figures of generative models.
// Rates and percentiles cover the interval between two polls (differences of the server's counters).
(function () {
  const params = new URLSearchParams(window.location.search);
  const INTERVAL_MS = Math.max(200, Number(params.get("interval_ms")) || 2000);
  const HISTORY = 90;
  const history = { rate: [], p50: [], p95: [], p99: [] };
  let previous = null;

  const $ = (id) => document.getElementById(id);
  const key = (m) => m.name + "/" + m.version;

  // histogram_quantile: linear interpolation inside the bucket holding the rank.
  function quantile(q, bounds, counts) {
    const total = counts.reduce((a, b) => a + b, 0);
    if (!total) return null;
    const rank = q * total;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      const before = seen;
      seen += counts[i];
      if (counts[i] > 0 && seen >= rank) {
        if (i >= bounds.length) return bounds[bounds.length - 1]; // +Inf bucket: the last bound
        const lower = i === 0 ? 0 : bounds[i - 1];
        return lower + ((bounds[i] - lower) * (rank - before)) / counts[i];
      }
    }
    return bounds[bounds.length - 1];
  }

  function format(value, digits) {
    return value === null || value === undefined ? "–" : value.toFixed(digits);
  }

  function push(series, value) {
    series.push(value);
    if (series.length > HISTORY) series.shift();
  }

  function frame(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "11px system-ui, sans-serif";
    return ctx;
  }

  function lineChart(canvas, lines) {
    const ctx = frame(canvas);
    const pad = { left: 46, right: 8, top: 8, bottom: 18 };
    const w = canvas.width - pad.left - pad.right;
    const h = canvas.height - pad.top - pad.bottom;
    const values = lines.flatMap((l) => l.values).filter((v) => v !== null);
    const max = Math.max(1e-9, ...values) * 1.1;
    ctx.strokeStyle = "#c9ced8";
    ctx.fillStyle = "#5b6475";
    for (let i = 0; i <= 4; i++) {
      const y = pad.top + (h * i) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.left, y);
      ctx.lineTo(pad.left + w, y);
      ctx.stroke();
      ctx.fillText(format((max * (4 - i)) / 4, max < 10 ? 2 : 0), 2, y + 4);
    }
    lines.forEach((line, index) => {
      ctx.strokeStyle = line.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let drawing = false;
      line.values.forEach((v, i) => {
        if (v === null) {
          drawing = false;
          return;
        }
        const x = pad.left + (w * i) / (HISTORY - 1);
        const y = pad.top + h - (h * v) / max;
        if (drawing) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        drawing = true;
      });
      ctx.stroke();
      ctx.lineWidth = 1;
      ctx.fillStyle = line.color;
      ctx.fillText(line.label, pad.left + 6 + index * 48, canvas.height - 4);
    });
    canvas.dataset.points = String(lines[0].values.length);
    canvas.dataset.last = JSON.stringify(lines.map((l) => l.values[l.values.length - 1]));
  }

  // 1234 -> "1234", 12345 -> "12.3k", 1234567 -> "1.23M": axis labels stay short.
  function compact(n) {
    if (n < 10000) return String(Math.round(n));
    if (n < 1e6) return (n / 1e3).toPrecision(3) + "k";
    return (n / 1e6).toPrecision(3) + "M";
  }

  // Up to 128 sizes share 560 px, so labels are drawn only where they fit: a size under its bar when it
  // clears its neighbours (the largest size always), a count over its bar when narrower than the bar.
  // A count axis on the left and a tooltip give every value.
  function barChart(canvas, sizes) {
    const ctx = frame(canvas);
    const entries = Object.entries(sizes).sort((a, b) => Number(a[0]) - Number(b[0]));
    const total = entries.reduce((sum, e) => sum + e[1], 0);
    const max = Math.max(1, ...entries.map((e) => e[1]));
    const gap = 6;
    // Whole numbers of executions: 0, about half the tallest bar, the tallest bar.
    const ticks = max >= 2 ? [0, Math.round(max / 2), max] : [0, max];
    const axisWidth = Math.max(...ticks.map((t) => ctx.measureText(compact(t)).width));
    const pad = { left: axisWidth + 10, right: 8, top: 16, bottom: 18 };
    const w = canvas.width - pad.left - pad.right;
    const h = canvas.height - pad.top - pad.bottom;
    const base = pad.top + h;
    const slot = entries.length ? w / entries.length : 0;
    const centre = (i) => pad.left + (i + 0.5) * slot;

    ctx.strokeStyle = "#e3e6eb";
    ctx.fillStyle = "#5b6475";
    ctx.textAlign = "right";
    ticks.forEach((tick) => {
      const y = base - (h * tick) / max;
      ctx.beginPath();
      ctx.moveTo(pad.left, y);
      ctx.lineTo(pad.left + w, y);
      ctx.stroke();
      if (entries.length) ctx.fillText(compact(tick), pad.left - 6, y + 4);
    });

    ctx.textAlign = "center";
    entries.forEach(([, count], i) => {
      const height = (h * count) / max;
      ctx.fillStyle = "#3b6fd8";
      const bar = Math.max(1, Math.min(48, slot * 0.7));
      ctx.fillRect(centre(i) - bar / 2, base - height, bar, height);
      const text = String(count);
      if (ctx.measureText(text).width <= slot - 2) {
        ctx.fillStyle = "#1d2330";
        ctx.fillText(text, centre(i), base - height - 3);
      }
    });

    // Size labels: the last one first, then from the left whatever clears the previous one and it.
    const half = (i) => ctx.measureText(entries[i][0]).width / 2;
    const last = entries.length - 1;
    const shown = [];
    if (entries.length) {
      const lastX = Math.min(centre(last), canvas.width - half(last));
      let right = -Infinity;
      for (let i = 0; i < last; i++) {
        const x = Math.max(centre(i), half(i));
        if (x - half(i) >= right + gap && x + half(i) + gap <= lastX - half(last)) {
          shown.push([i, x]);
          right = x + half(i);
        }
      }
      shown.push([last, lastX]);
    }
    ctx.fillStyle = "#1d2330";
    shown.forEach(([i, x]) => ctx.fillText(entries[i][0], x, canvas.height - 4));
    ctx.textAlign = "start";

    canvas.onmousemove = (event) => {
      const i = Math.floor((event.offsetX * (canvas.width / canvas.clientWidth) - pad.left) / slot);
      canvas.title = entries[i] ? `batch size ${entries[i][0]}: ${entries[i][1]} executions` : "";
    };
    if (!entries.length) {
      ctx.fillStyle = "#5b6475";
      ctx.fillText("no executions yet", pad.left, canvas.height / 2);
    }
    canvas.dataset.total = String(total);
    canvas.dataset.sizes = JSON.stringify(Object.fromEntries(entries));
  }

  // What the adaptive batcher (dynamic_batching.target_p99_ms) chose, on the pending cell.
  function adaptiveTitle(model) {
    const a = model.adaptive_batching;
    return `adaptive batching, target p99 ${a.target_p99_ms} ms: batch cap ${a.batch_cap}, ` +
      `queue delay ${format(a.queue_delay_ms, 2)} ms, ${a.overloaded ? "overloaded, " : ""}` +
      `${model.shed} shed`;
  }

  function renderTable(rows) {
    const body = $("models").tBodies[0];
    body.replaceChildren();
    rows.forEach(({ model, rate }) => {
      const tr = document.createElement("tr");
      tr.dataset.model = model.name;
      const cells = [
        model.name,
        model.version || "–",
        model.state,
        format(rate, 1),
        model.success === undefined ? "–" : String(model.success + model.failure),
        model.failure === undefined ? "–" : String(model.failure),
        model.inferences === undefined ? "–" : String(model.inferences),
        model.pending === undefined ? "–" : String(model.pending),
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i === 2) td.className = model.state;
        if (i === 2 && model.reason) td.title = model.reason;
        if (i === 7 && model.adaptive_batching) td.title = adaptiveTitle(model);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    if (n < 1024 * 1024 * 1024) return (n / (1024 * 1024)).toFixed(1) + " MiB";
    return (n / (1024 * 1024 * 1024)).toFixed(2) + " GiB";
  }

  // A latency histogram of the statistics' "generation" figures: its percentile in ms, "–" when empty.
  function latencyMs(histogram, q) {
    const seconds = quantile(q, histogram.bounds_ns.map((b) => b / 1e9), histogram.counts);
    return seconds === null ? "–" : format(seconds * 1000, 1) + " ms";
  }

  // Generative versions: token latencies since start, tokens/s between two polls, sequences and KV memory.
  function renderGeneration(models, before, dt) {
    const generative = models.filter((m) => m.generation);
    $("generative").hidden = generative.length === 0;
    const body = $("generation").tBodies[0];
    body.replaceChildren();
    generative.forEach((model) => {
      const g = model.generation;
      const old = before.get(key(model));
      const rate = old && old.generation && dt > 0 ? (g.generated_tokens - old.generation.generated_tokens) / dt : null;
      const cells = [
        model.name,
        model.version || "–",
        latencyMs(g.time_to_first_token, 0.5),
        latencyMs(g.time_to_first_token, 0.99),
        latencyMs(g.inter_token, 0.5),
        latencyMs(g.inter_token, 0.99),
        format(rate, 1),
        String(g.sequences_active),
        String(g.sequences_waiting),
        bytes(g.kv_cache_bytes),
        g.kv_reserved_tokens + " / " + g.kv_budget_tokens + " tokens",
      ];
      const tr = document.createElement("tr");
      tr.dataset.model = model.name;
      cells.forEach((text) => {
        const td = document.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function update(data) {
    const bounds = data.latency_bounds_s;
    const before = new Map((previous ? previous.models : []).map((m) => [key(m), m]));
    const dt = previous ? data.time_s - previous.time_s : 0;
    const buckets = new Array(bounds.length + 1).fill(0);
    let requests = 0;
    const batchSizes = {};
    const rows = data.models.map((model) => {
      Object.entries(model.batch_sizes || {}).forEach(([size, n]) => {
        batchSizes[size] = (batchSizes[size] || 0) + n;
      });
      const old = before.get(key(model));
      if (!old || dt <= 0 || model.success === undefined || old.success === undefined) {
        return { model, rate: null };
      }
      const delta = model.success + model.failure - (old.success + old.failure);
      requests += delta;
      model.latency_buckets.forEach((count, i) => {
        buckets[i] += count - old.latency_buckets[i];
      });
      return { model, rate: delta / dt };
    });
    renderTable(rows);
    renderGeneration(data.models, before, dt);
    barChart($("batch-chart"), batchSizes);
    if (previous && dt > 0) {
      const ms = (q) => {
        const seconds = quantile(q, bounds, buckets);
        return seconds === null ? null : seconds * 1000;
      };
      push(history.rate, requests / dt);
      push(history.p50, ms(0.5));
      push(history.p95, ms(0.95));
      push(history.p99, ms(0.99));
      lineChart($("rate-chart"), [{ label: "req/s", color: "#3b6fd8", values: history.rate }]);
      lineChart($("latency-chart"), [
        { label: "p50", color: "#13803b", values: history.p50 },
        { label: "p95", color: "#d08700", values: history.p95 },
        { label: "p99", color: "#b3261e", values: history.p99 },
      ]);
      $("total-rate").textContent = format(requests / dt, 1);
      ["p50", "p95", "p99"].forEach((name) => {
        const value = history[name][history[name].length - 1];
        $(name).textContent = value === null ? "–" : format(value, 2) + " ms";
      });
    }
    previous = data;
  }

  async function poll() {
    try {
      const response = await fetch("/dashboard/data", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      update(await response.json());
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      $("status").textContent = "cannot reach the server: " + error.message;
    } finally {
      window.setTimeout(poll, INTERVAL_MS);
    }
  }

  poll();
})();
