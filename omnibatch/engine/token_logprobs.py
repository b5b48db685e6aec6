"""The log-probability of each token a transformers `generate` call wrote, kept without its scores.

`generate(output_scores=True)` keeps a (batch, vocabulary) tensor per step: for
a 150 k vocabulary, a batch of 8 and 256 steps, over a gigabyte. A logits
processor sees the same distributions one step at a time: it keeps the last
step's log-softmax and, at the next step, reads the probability of the token that
was chosen from it (the last column of `input_ids`). It runs after the model's
own processors and before sampling warpers (temperature, top-p), so it measures
the model's distribution. Imported only by the transformers engine (it needs torch).
"""

from __future__ import annotations


def chosen_token_recorder():
    """A new `transformers.LogitsProcessor` that records the chosen tokens' log-probabilities."""
    import torch
    from transformers import LogitsProcessor

    class ChosenTokenLogprobs(LogitsProcessor):
        def __init__(self) -> None:
            self._last = None
            self._steps: list = []

        def __call__(self, input_ids, scores):
            if self._last is not None:
                self._steps.append(self._last.gather(1, input_ids[:, -1:].to(self._last.device)).squeeze(1))
            self._last = torch.log_softmax(scores.float(), dim=-1)
            return scores

        def means(self, sequences, counts: list[int]) -> list[float | None]:
            """Each row's mean log-probability over its first `counts[row]` generated tokens."""
            if self._last is not None:  # the last step's token is only in the output
                self._steps.append(self._last.gather(1, sequences[:, -1:].to(self._last.device)).squeeze(1))
                self._last = None
            if not self._steps:
                return [None] * len(counts)
            table = torch.stack(self._steps, dim=1).tolist()
            return [sum(row[:n]) / n if 0 < n <= len(row) else None for row, n in zip(table, counts)]

    return ChosenTokenLogprobs()
