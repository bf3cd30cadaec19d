"""The archive stores: destination parsing, S3 through moto over HTTP, a local directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from examctl.errors import ServiceUnavailable, UsageError
from examctl.stores.archive_store import (
    Destination,
    Encryption,
    StoredObject,
    VerificationFailed,
    parse_destination,
    parse_encryption,
    verify_object,
    write_object,
)
from examctl.stores.s3_store import MIB, S3Store
from tests.archive.support import StoreAt, s3_client, use_s3
from tests.servers import MotoServer, free_port


@pytest.mark.parametrize(
    ("dest", "parsed"),
    [
        ("s3://bkt", Destination("s3", bucket="bkt")),
        ("s3://my.bucket-1/a//b/", Destination("s3", bucket="my.bucket-1", prefix="a/b")),
        ("file:///srv/archive", Destination("file", path=Path("/srv/archive"))),
        ("file://localhost/srv/a%20b", Destination("file", path=Path("/srv/a b"))),
        ("/srv/archive", Destination("file", path=Path("/srv/archive"))),
        ("/srv/s3:/a", Destination("file", path=Path("/srv/s3:/a"))),
        ("file:///srv/s3:a", Destination("file", path=Path("/srv/s3:a"))),
    ],
)
def test_parse_destination__accepted_forms__parsed(dest: str, parsed: Destination) -> None:
    assert parse_destination(dest) == parsed


def test_parse_destination__relative_path__made_absolute(tmp_path: Path) -> None:
    assert parse_destination("./examctl-archive").path == tmp_path / "examctl-archive"
    assert parse_destination("./s3:b").path == tmp_path / "s3:b"


@pytest.mark.parametrize(
    ("dest", "message"),
    [
        ("s3://", "--dest 's3://': no valid bucket name after s3://"),
        ("s3:///prefix", "--dest 's3:///prefix': no valid bucket name after s3://"),
        ("s3://bad bucket/x", "no valid bucket name"),
        ("ftp://x", "--dest 'ftp://x': unsupported scheme 'ftp://'"),
        ("file://otherhost/x", "a file:// URL needs an absolute path"),
        ("  ", "--dest is empty"),
    ],
)
def test_parse_destination__malformed__usage_error(dest: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_destination(dest)


@pytest.mark.parametrize(
    ("dest", "sse", "key", "message"),
    [
        ("s3://bkt", "aes256", None, "--sse must be AES256 or aws:kms"),
        ("/srv/a", "AES256", None, "apply to s3:// destinations only"),
        ("s3://bkt", "AES256", "k-1", "--sse-kms-key-id needs --sse aws:kms"),
    ],
)
def test_parse_encryption__clashing_options__usage_error(
    dest: str, sse: str, key: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        parse_encryption(parse_destination(dest), sse, key)


def payload(size: int) -> bytes:
    return os.urandom(size)


def put(store: object, key: str, data: bytes) -> StoredObject:
    return write_object(store, key, lambda out: out.write(data) and None)  # type: ignore[arg-type]


def test_local_store__object_written__verified_private_and_no_leftovers(
    store_at: StoreAt, tmp_path: Path
) -> None:
    store = store_at(str(tmp_path / "a"))
    store.check()
    data = payload(70_000)

    stored = put(store, "attempts/2020/01/02/r-0001.jsonl.gz", data)

    verify_object(store, stored)
    path = tmp_path / "a/attempts/2020/01/02/r-0001.jsonl.gz"
    assert stored == StoredObject(stored.key, len(data), hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_local_store__object_changed_on_disk__verification_fails(
    store_at: StoreAt, tmp_path: Path
) -> None:
    store = store_at(str(tmp_path))
    stored = put(store, "attempts/x.gz", b"0123456789")
    (tmp_path / "attempts/x.gz").write_bytes(b"0123456780")
    with pytest.raises(VerificationFailed, match="reads back with SHA-256"):
        verify_object(store, stored)
    (tmp_path / "attempts/x.gz").write_bytes(b"012345678")
    with pytest.raises(VerificationFailed, match="has 9 bytes in the store, 10 were written"):
        verify_object(store, stored)


def test_local_store__remove__takes_leftover_part_files_too(
    store_at: StoreAt, tmp_path: Path
) -> None:
    store = store_at(str(tmp_path))
    put(store, "attempts/x.gz", b"data")
    (tmp_path / "attempts/.x.gz.abc123.part").write_bytes(b"half")

    store.remove("attempts/x.gz")
    store.remove("attempts/x.gz")  # absent: no error

    assert list((tmp_path / "attempts").iterdir()) == []


def test_local_store__destination_is_a_file__usage_error(store_at: StoreAt, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        store_at(str(tmp_path / "f")).check()


def test_s3_store__large_object__multipart_upload_verified(
    bucket: str, s3_server: MotoServer
) -> None:
    store = S3Store(
        Destination("s3", bucket=bucket, prefix="pre/fix"),
        Encryption(),
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    )
    data = payload(11 * MIB)

    stored = put(store, "attempts/big.jsonl.gz", data)

    verify_object(store, stored)
    head = s3_client(s3_server).head_object(Bucket=bucket, Key="pre/fix/attempts/big.jsonl.gz")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: it really went multipart
    assert head["Metadata"] == {"sha256": hashlib.sha256(data).hexdigest()}
    assert not list(store._staging.iterdir())  # the staged copy is gone
    store.close()


def test_s3_store__sse_aes256__object_encrypted(
    store_at: StoreAt, bucket: str, s3_server: MotoServer
) -> None:
    store = store_at(f"s3://{bucket}/p", Encryption("AES256"))
    put(store, "manifests/r.json", b"{}")
    head = s3_client(s3_server).head_object(Bucket=bucket, Key="p/manifests/r.json")
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_store__sse_kms__key_id_sent(
    store_at: StoreAt, bucket: str, s3_server: MotoServer
) -> None:
    kms = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    store = store_at(f"s3://{bucket}", Encryption("aws:kms", kms))
    put(store, "manifests/r.json", b"{}")
    head = s3_client(s3_server).head_object(Bucket=bucket, Key="manifests/r.json")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms)


def test_s3_store__remove__aborts_multipart_upload_left_by_a_killed_run(
    store_at: StoreAt, bucket: str, s3_server: MotoServer
) -> None:
    client = s3_client(s3_server)
    client.create_multipart_upload(Bucket=bucket, Key="p/attempts/x.gz")
    store = store_at(f"s3://{bucket}/p")

    store.remove("attempts/x.gz")

    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_s3_store__bucket_missing__service_unavailable(
    store_at: StoreAt, s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_s3(monkeypatch, s3_server)
    store = store_at("s3://no-such-bucket/x")
    with pytest.raises(ServiceUnavailable, match="bucket no-such-bucket does not exist at http"):
        store.check()


def test_s3_store__endpoint_down__service_unavailable(
    store_at: StoreAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = MotoServer()  # never started: nothing listens on its port
    use_s3(monkeypatch, down)
    store = store_at("s3://bkt/x")
    with pytest.raises(ServiceUnavailable, match=f"S3 unreachable at http://127.0.0.1:{down.port}"):
        store.check()


def test_s3_store__no_credentials__usage_error(
    store_at: StoreAt, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UsageError, match="no AWS credentials found"):
        store_at("s3://bkt").check()
