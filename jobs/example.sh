#!/usr/bin/env bash
# Transcribe a podcast archive on a GPU partition: 16 shards, at most 8 at once,
# one A100 each, a 4-hour limit per attempt (shards near it requeue themselves).
# Run it again after a failure or a cancellation: only unfinished shards are
# submitted, and each skips what it already wrote.
set -euo pipefail

MANIFEST=${1:-episodes.jsonl}     # {"id": ..., "path": ..., "language": ...} per line
OUT=${2:-/scratch/$USER/podcasts}
MODEL=${MODEL:-/models/Qwen3-Omni-30B-A3B-Instruct}

omnibatch submit transcribe "$MANIFEST" --out "$OUT" \
    --array 16 --max-parallel 8 \
    --partition gpu --gpus-per-task 1 --cpus-per-task 8 --mem 64G --time 4:00:00 \
    --sbatch-arg=--constraint=a100 \
    --model "$MODEL" --formats parquet,srt,vtt

# Then, at any time:
#   omnibatch status "$OUT"            shards done/running/failed, items, hours, throughput
#   less "$OUT"/_run/slurm/*.sbatch    the exact scripts that were submitted
#   cat "$OUT"/_run/summary.json       written once every shard has ended
