"""omnibatch: batch transcripts, captions and spoken summaries of long audio and video."""

__version__ = "0.1.0"
