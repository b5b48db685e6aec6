"""The input stage: manifests, folders and media paths -> MediaItems (README, "Inputs").

    inputs = read_inputs(["episodes.jsonl", "extra-recordings/"])
    inputs.items    # list[MediaItem], in the order the inputs named them
    inputs.skipped  # list[Skipped]: what folder scans passed over, for the run summary
"""

from omnibatch.manifests.entries import derive_id
from omnibatch.manifests.inputs import Inputs, read_inputs
from omnibatch.manifests.scan import Skipped

__all__ = ["Inputs", "Skipped", "derive_id", "read_inputs"]
