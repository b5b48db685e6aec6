"""Run a task on this machine and tell the person at the terminal what happened."""

from __future__ import annotations

import sys
from pathlib import Path

from omnibatch.config import RunConfig
from omnibatch.models.notice import TINY_NOTICE, uses_tiny_model
from omnibatch.run.executor import ShardStats, run_shard
from omnibatch.run.progress import media_amount
from omnibatch.text_safety import printable


def summarize_stats(stats: ShardStats, out: str) -> str:
    lines = [
        f"{stats.task} {stats.shard}: {stats.ok} ok, {stats.error} failed"
        + (f", {stats.skipped_done} already done" if stats.skipped_done else "")
        + (f" ({stats.failed_before} of them failed: pass --retry-errors to retry)" if stats.failed_before else "")
        + f" in {stats.wall_s:.1f} s"
        + (f" ({media_amount(stats.media_seconds)} of media, {stats.media_seconds / max(stats.wall_s, 1e-9):.1f}x "
           "realtime)" if stats.media_seconds else ""),
        f"outputs: {out}/{stats.task}/",
    ]
    if stats.scored:
        lines.append(f"WER {stats.corpus_wer:.2%}, CER {stats.corpus_cer:.2%} over the {stats.scored} files "
                     f"with a reference ({stats.reference_words} reference words, normalizer {stats.normalizer})")
    if stats.failed_by_stage:
        lines.append("failed at: " + ", ".join(f"{stage} {n}" for stage, n in sorted(stats.failed_by_stage.items())))
    if stats.engine_calls:
        lines.append(f"engine: busy {stats.engine_busy_fraction:.0%} of its time, {stats.mean_in_flight:.1f} "
                     f"requests in flight on average (bound {stats.in_flight_bound}), {stats.engine_calls} steps")
    for skipped in stats.skipped_inputs[:10]:
        lines.append(f"skipped input: {printable(skipped)}")
    if len(stats.skipped_inputs) > 10:
        lines.append(f"... and {len(stats.skipped_inputs) - 10} more skipped inputs")
    for failed in stats.failed[:20]:
        lines.append(printable(f"FAILED {failed['id']} ({failed['path']}) at {failed['stage']}: "
                               f"{failed['error']}"))
    if len(stats.failed) > 20:
        lines.append(f"... and {len(stats.failed) - 20} more failures (see the error column)")
    return "\n".join(lines)


def run_local(config: RunConfig) -> int:
    """Run the configured shard; return the process exit code (1 when any item failed)."""
    tiny = uses_tiny_model(config.model, config.engine)  # the engine warns as it loads; we repeat it last
    from omnibatch.run.attempt import shard_attempt
    from omnibatch.run.executor import build_task

    build_task(config)  # refuses options the task cannot use before the folder is touched
    with shard_attempt(config) as attempt:  # log file, attempt record, stop on SIGTERM/USR2/Ctrl-C
        stats = run_shard(config, should_stop=attempt.should_stop, progress=sys.stderr.isatty())
    print(summarize_stats(stats, config.out), file=sys.stderr)
    if config.nemo_manifest and config.task == "transcribe":
        from omnibatch.run.nemo_manifest import write_nemo_manifest

        count = write_nemo_manifest(config.out_dir, config.fingerprint(), Path(config.nemo_manifest))
        print(f"NeMo manifest: {config.nemo_manifest} ({count} lines, pred_text beside the input keys)",
              file=sys.stderr)
    if tiny:
        print(TINY_NOTICE, file=sys.stderr)
    return 1 if stats.error or stats.failed_before else 0
