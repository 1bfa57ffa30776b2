"""`estimate validate DECODER --prompt P --generate G`: a real generation loop in onnxruntime.

For a decoder with a KV cache (estimator/decoder.py), each generation is:

1. the prompt pass (prefill): `input_ids` of P random tokens, `attention_mask` of ones,
   `position_ids` 0..P-1 and zero-length `past_key_values` (as runtimes feed them); its wall
   time, with the greedy pick of the first token, is the time to first token (TTFT);
2. G - 1 decode steps: the last token as `input_ids` [batch, 1], `present` fed back as
   `past_key_values`, the mask one longer, the position the cache length; each step's wall time
   is one time per output token (TPOT).

Warm-up generations are discarded; then `runs` generations are timed, one after another. A
graph-only file or built-in runs with generated weights (modelprep.load_with_weights), so the
tokens are meaningless, the costs are not. The results document is the usual schema
(docs/results-schema.md) with scenario "generation": `latency_s` summarises the TPOTs of all
timed steps, `throughput_per_s` is tokens per second over all sequences (batch / mean TPOT), and
`llm` holds the TTFT and TPOT statistics; with --hw, `prediction` has the roofline's TTFT and
TPOT for the same prompt and generation (estimator/llm.py) and their errors.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from estimator.errors import UserError

from . import host as hostmod
from . import modelprep, results, stats
from .runner import _tool_version, open_session, ort_module, resolve_provider, session_options

#: a built-in whose fp32 weights would take more than this share of the host's memory is refused
MAX_MEMORY_SHARE = 0.5
_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
       "tensor(int32)": np.int32}


def _decoder_io(sess, what: str):
    from estimator import decoder

    ins = [(i.name, [d if isinstance(d, int) else str(d) for d in i.shape]) for i in sess.get_inputs()]
    io = decoder.detect(ins)
    if io is None:
        raise UserError(f"{what}: --prompt/--generate need a decoder with a KV cache (inputs input_ids and "
                        "past_key_values.N.key/value); this model has " + ", ".join(n for n, _ in ins[:6]))
    if io.kv_heads is None or io.head_dim is None:
        raise UserError(f"{what}: the KV heads or head size of its cache inputs are symbolic; cannot feed them")
    return io


def _generation(sess, io, batch: int, prompt: int, generate: int, rng: np.random.Generator, vocab: int,
                what: str = "model"):
    """(ttft_s, [tpot_s of each decode step]) of one greedy generation."""
    types = {i.name: _NP.get(i.type, np.float32) for i in sess.get_inputs()}
    out_names = [o.name for o in sess.get_outputs()]
    logits_name = next((o for o in out_names if "logits" in o), out_names[0])
    present = [o for o in out_names if o.startswith("present")]
    ids = rng.integers(0, vocab, size=(batch, prompt), dtype=np.int64)
    feeds = {io.ids: ids.astype(types[io.ids])}
    if io.mask:
        feeds[io.mask] = np.ones((batch, prompt), dtype=types[io.mask])
    if io.positions:
        feeds[io.positions] = np.tile(np.arange(prompt, dtype=np.int64), (batch, 1)).astype(types[io.positions])
    for n in io.past_inputs:
        feeds[n] = np.zeros((batch, io.kv_heads, 0, io.head_dim), dtype=types[n])
    t0 = time.perf_counter()
    outs = _run(sess, feeds, what, "the prompt pass")
    nxt = outs[out_names.index(logits_name)][:, -1, :].argmax(axis=-1)
    ttft = time.perf_counter() - t0
    # present.N.key|value -> past_key_values.N.key|value (same layer and kind)
    by_name = dict(zip(out_names, outs))
    pairs = _pairs(io, present)
    steps = []
    length = prompt
    for _ in range(generate - 1):
        feeds = {io.ids: nxt.reshape(batch, 1).astype(types[io.ids])}
        if io.mask:
            feeds[io.mask] = np.ones((batch, length + 1), dtype=types[io.mask])
        if io.positions:
            feeds[io.positions] = np.full((batch, 1), length, dtype=types[io.positions])
        for p, n in pairs:
            feeds[n] = by_name[p]
        t0 = time.perf_counter()
        outs = _run(sess, feeds, what, f"decode step {len(steps) + 1} (cache {length})")
        nxt = outs[out_names.index(logits_name)][:, -1, :].argmax(axis=-1)
        steps.append(time.perf_counter() - t0)
        by_name = dict(zip(out_names, outs))
        length += 1
    return ttft, steps


def _pairs(io, present: list[str]) -> list[tuple[str, str]]:
    from estimator.decoder import cache_slot

    slots = {cache_slot(n): n for n in io.past_inputs}
    pairs = [(p, slots.get(cache_slot(p))) for p in present]
    missing = [p for p, n in pairs if n is None] + [n for n in io.past_inputs if n not in {q for _, q in pairs}]
    if missing or not pairs:
        raise UserError(f"cannot pair the present outputs with the past inputs (no partner for {', '.join(missing[:3]) or 'any'}): "
                        "a generation loop feeds present.N.key|value back as past_key_values.N.key|value")
    return pairs


def _run(sess, feeds, what: str, step: str):
    try:
        return sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        from .runner import short_ort_error
        raise UserError(f"{what}: onnxruntime failed at {step}: {short_ort_error(e)}") from None


def _check_size(model: str) -> None:
    try:
        from estimator.models import decoder as dec
    except ImportError:
        return
    cfg = dec.CONFIGS.get(model)
    mem = hostmod.memory_total_bytes()
    if cfg is None or not mem:
        return
    size = dec.stored_counts(cfg)[1] if getattr(cfg, "form", "plain") == "genai" else cfg.params * 4
    if size > MAX_MEMORY_SHARE * mem:
        raise UserError(f"{model}: its weights ({size / 2**30:.1f} GiB, generated) would take more than "
                        f"half of this host's {mem / 2**30:.1f} GiB of memory: measure a smaller decoder (gpt2, "
                        "llama-3.2-1b) or a file")


def run_generation(model: str, out_dir: Path, *, prompt: int, generate: int, batches: list[int], threads: int | None,
                   runs: int, warmup: int, hw: str | None, provider: str, quiet: bool) -> tuple[Path, Path, dict]:
    if prompt < 1 or generate < 2:
        raise UserError(f"--prompt {prompt} --generate {generate}: need a prompt of >= 1 token and >= 2 tokens to "
                        "generate (the first comes from the prompt pass, the others from decode steps)")
    if runs < 1:
        raise UserError(f"--iterations {runs}: must be >= 1")
    ort = ort_module()
    provider = resolve_provider(provider)
    results.check_out_dir(out_dir)
    _check_size(model)
    if hw:
        from estimator import hardware
        hw_profile = hardware.load_profile(hw)
    resolved = modelprep.resolve_model(model)
    sha = modelprep.sha256_file(resolved.path)
    original, generated = modelprep.load_with_weights(resolved.path)
    work = resolved.path
    if generated:
        work = modelprep.cache_dir() / "work" / f"{sha[:16]}-gen.onnx"
        work.parent.mkdir(parents=True, exist_ok=True)
        if not work.is_file():
            modelprep._atomic_save(original, work)
    th = threads or hostmod.cpu_info()["usable_cores"] or 1
    sess = open_session(work, session_options(th, "all", denormal_zero=generated), provider, resolved.name)
    io = _decoder_io(sess, resolved.name)
    fixed = [i.name for i in sess.get_inputs() if i.name in io.past_inputs and isinstance(i.shape[2], int)]
    if fixed:
        length = next(i.shape[2] for i in sess.get_inputs() if i.name == fixed[0])
        raise UserError(f"{resolved.name}: the file fixes the cache length of {fixed[0]} at {length}: "
                        "a generation loop needs a growing cache (export with dynamic past and sequence dims); "
                        "`estimate FILE --past N` costs it at any length")
    from estimator.llm import max_positions
    max_pos = max_positions(model)
    if max_pos is not None and prompt + generate - 1 > max_pos:
        raise UserError(f"--prompt {prompt} --generate {generate}: {prompt + generate - 1} positions, beyond "
                        f"{model}'s {max_pos}")
    vocab = next((int(o.shape[-1]) for o in sess.get_outputs() if "logits" in o.name and isinstance(o.shape[-1], int)),
                 1000)
    started = results.utc_now()
    run_id, json_path, csv_path = results.new_run_paths(out_dir, resolved.name, started)
    rng = np.random.default_rng(0)
    configs = []
    for b in batches:
        if not quiet:
            sys.stderr.write(f"estimate: {resolved.name} batch {b}: {warmup} warm-up + {runs} timed generations of "
                             f"{prompt} + {generate} tokens\n")
        busy0 = hostmod.cpu_times()
        for _ in range(warmup):
            _generation(sess, io, b, prompt, generate, rng, vocab, resolved.name)
        ttfts, tpots, means = [], [], []
        t_start = time.perf_counter()
        for _ in range(runs):
            t, steps = _generation(sess, io, b, prompt, generate, rng, vocab, resolved.name)
            ttfts.append(t)
            tpots += steps
            means.append(float(np.mean(steps)))
        wall = time.perf_counter() - t_start
        busy = hostmod.busy_percent(busy0, hostmod.cpu_times())
        tpot = stats.latency_summary(tpots)
        cfg = {"batch": b, "precision": "fp32", "threads": th, "instances": 1, "scenario": "generation",
               "status": "ok", "complete": True, "runs": runs, "samples": b * runs * generate,
               "latency_s": tpot, "throughput_per_s": b / float(np.mean(tpots)),
               "peak_rss_bytes": hostmod.peak_rss_bytes(), "layers": [],
               "load": {"cpu_busy_pct_during": busy},
               "llm": {"prompt": prompt, "generate": generate, "decode_steps": generate - 1,
                       "ttft_s": stats.latency_summary(ttfts), "tpot_s": tpot,
                       "tpot_mean_per_run_s": means, "tokens_per_s": 1.0 / float(np.mean(tpots)),
                       "tokens_per_s_total": b / float(np.mean(tpots)), "timed_wall_s": wall}}
        configs.append(cfg)
    notes = []
    if generated:
        notes.append("graph-only model: ran with generated weights (the tokens are meaningless, the costs are not)")
    if hw:
        from estimator import llm
        try:
            lp = llm.predict(str(resolved.path), hw_profile, prompt=prompt, generate=generate, batches=batches,
                             precision="fp32")
            for cfg, pt in zip(configs, lp.points):
                m = cfg["llm"]
                cfg["prediction"] = {"hw": hw, "ttft_s": pt.prefill.seconds, "tpot_s": pt.tpot_mean_s,
                                     "latency_s": pt.tpot_mean_s,
                                     "ttft_error": pt.prefill.seconds / m["ttft_s"]["p50"] - 1,
                                     "tpot_error": pt.tpot_mean_s / float(np.mean(m["tpot_mean_per_run_s"])) - 1,
                                     "error": pt.tpot_mean_s / m["tpot_s"]["p50"] - 1}
        except UserError as e:
            notes.append(f"no prediction: {e}")
    doc = {
        "schema": results.SCHEMA_NAME, "schema_version": results.SCHEMA_VERSION, "run_id": run_id,
        "created_utc": started.isoformat(timespec="seconds"), "partial": False,
        "tool": {"name": "estimate", "version": _tool_version()}, "command": list(sys.argv),
        "model": {"name": resolved.name, "path": str(resolved.path), "sha256": sha, "builtin": resolved.builtin,
                  "size_bytes": resolved.path.stat().st_size, "task": "text generation",
                  "inputs": [{"name": i.name, "dtype": i.type, "shape": [str(d) for d in i.shape]}
                             for i in sess.get_inputs()],
                  "weights": "generated" if generated else "file",
                  "decoder": {"layers": io.layers, "kv_heads": io.kv_heads, "head_dim": io.head_dim}},
        "engine": {"name": "onnxruntime", "version": ort.__version__, "provider": provider,
                   "graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_allow_spinning": False,
                   "execution_mode": "sequential"},
        "host": hostmod.host_info(),
        "settings": {"scenario": "generation", "prompt": prompt, "generate": generate, "warmup_generations": warmup,
                     "timed_generations": runs, "percentile_method": "nearest-rank", "hw": hw,
                     "latency_definition": "wall time of one decode step's session.run() plus the greedy pick "
                                           "(TPOT); TTFT: the prompt pass and its pick",
                     "throughput_definition": "tokens per second over all sequences: batch / mean TPOT"},
        "configurations": configs, "notes": notes,
    }
    results.write_results(doc, json_path, csv_path)
    return json_path, csv_path, doc
