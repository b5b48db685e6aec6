"""Objects in storage as inputs: a real S3 protocol server (moto) and a real HTTP server, both local."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mediagen import make_audio, make_speech
from omnibatch.errors import MediaError
from omnibatch.manifests import read_inputs
from omnibatch.media.remote import download
from omnibatch.pipeline.decode_pool import Failed, Probed, decode_events

OMNIBATCH = str(Path(sys.executable).with_name("omnibatch"))
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


class _NoDecode:
    def decode(self, item, info):
        return iter(())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with bucket `media`: a spoken WAV, a tone, junk bytes."""
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket="media")
    folder = tmp_path_factory.mktemp("s3src")
    client.upload_file(str(make_speech(folder / "hello.wav", "hello world, this is a test")), "media",
                       "talks/hello.wav")
    client.upload_file(str(make_audio(folder / "tone.wav", 1.0)), "media", "talks/tone.wav")
    client.put_object(Bucket="media", Key="talks/junk.wav", Body=b"not audio" * 50)
    import fsspec

    fsspec.config.conf.pop("s3", None)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    make_audio(root / "tone.wav", 1.0)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_s3_prefix_lists_its_media_and_items_stage_to_private_files(s3):
    items = read_inputs(["s3://media/talks/"]).items
    assert [it.origin.location for it in items] == ["s3://media/talks/hello.wav", "s3://media/talks/junk.wav",
                                                    "s3://media/talks/tone.wav"]
    events = list(decode_events(_NoDecode(), 0, items[2]))
    assert isinstance(events[0], Probed) and 0.9 < events[0].info.duration_s < 1.1
    junk = list(decode_events(_NoDecode(), 1, items[1]))
    assert isinstance(junk[0], Failed) and "junk.wav" in junk[0].error and "not a media file" in junk[0].error


def test_a_missing_s3_object_fails_at_once(s3, tmp_path):
    (item,) = read_inputs(["s3://media/talks/nothing.wav"]).items
    (event,) = decode_events(_NoDecode(), 0, item)
    assert isinstance(event, Failed) and event.stage == "fetch" and "not found" in event.error


def test_the_size_cap_refuses_a_big_object(s3, tmp_path):
    with open(tmp_path / "x", "wb") as out, pytest.raises(MediaError, match="max-download-bytes"):
        download("s3://media/talks/hello.wav", out, max_bytes=1000)


def test_http_objects_a_404_at_once_and_an_unreachable_server_after_retries(http_root, tmp_path):
    ok, missing = read_inputs([f"{http_root}/tone.wav", f"{http_root}/gone.wav"]).items
    assert isinstance(next(decode_events(_NoDecode(), 0, ok)), Probed)
    sleeps: list[float] = []
    with open(tmp_path / "a", "wb") as out, pytest.raises(MediaError, match="not found"):
        download(missing.origin.location, out, sleep=sleeps.append)
    assert sleeps == []  # a 404 is not retried
    dead = f"http://127.0.0.1:{_free_port()}/tone.wav"
    with open(tmp_path / "b", "wb") as out, pytest.raises(MediaError, match="after 4 attempts"):
        download(dead, out, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 2.0]


def test_gs_without_gcsfs_is_refused_clearly():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        from omnibatch.errors import InputError

        with pytest.raises(InputError, match="gcsfs"):
            read_inputs(["gs://bucket/a.wav"])
    else:
        pytest.skip("gcsfs is installed")


@pytest.mark.slow
def test_transcribe_from_s3_end_to_end_with_whisper(s3, http_root, tmp_path):
    out = tmp_path / "out"
    dead = f"http://127.0.0.1:{_free_port()}/x.wav"
    result = subprocess.run([OMNIBATCH, "transcribe", "s3://media/talks/", "s3://media/none.wav", dead,
                             "--out", str(out), "--engine", "whisper", "--language", "en", "--workers", "1"],
                            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                            env={**os.environ, **s3})
    assert result.returncode == 1, result.stderr
    rows = {r["path"]: r for r in pq.read_table(out / "transcribe").to_pylist()}
    assert len(rows) == 5, rows.keys()
    heard = rows["s3://media/talks/hello.wav"]["text"].lower()
    assert "world" in heard and "test" in heard, heard
    assert rows["s3://media/talks/tone.wav"]["error"] is None
    assert "not a media file" in rows["s3://media/talks/junk.wav"]["error"]
    assert "not found" in rows["s3://media/none.wav"]["error"]
    assert "after 4 attempts" in rows[dead]["error"]
