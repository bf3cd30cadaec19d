"""S3Store: archive objects in an S3 bucket (or an S3-compatible store such as MinIO or moto).

boto3 is configured exactly as in production: the standard credential chain (environment,
profile, instance or pod role), `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` (read by boto3 itself),
multipart uploads above a threshold, and checksums only where the API requires them, so that
S3-compatible stores that lack the newer default CRC trailers accept the uploads. Each object
carries its SHA-256 in its metadata; verification still reads the bytes back and hashes them.
The bucket must exist: examctl never creates buckets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from examctl.errors import ExamctlError, ServiceUnavailable, UsageError
from examctl.stores.archive_store import (
    Destination,
    Encryption,
    ObjectMissing,
    Sink,
    TranslatedFile,
)

MIB = 1024 * 1024
_MISSING_CODES = ("404", "NoSuchKey", "NotFound")


class S3Store:
    def __init__(
        self,
        destination: Destination,
        encryption: Encryption,
        *,
        multipart_threshold: int = 64 * MIB,
        multipart_chunksize: int = 16 * MIB,
    ) -> None:
        self.destination = destination
        self.bucket = destination.bucket
        self.encryption = encryption
        config = Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self.client: Any = boto3.session.Session().client("s3", config=config)
        except (BotoCoreError, ValueError) as error:
            raise UsageError(f"S3 client configuration (AWS_* settings): {error}") from None
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
        )
        self._staging = Path(tempfile.mkdtemp(prefix="examctl-archive-"))

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def check(self) -> None:
        with self._translated():
            self.client.head_bucket(Bucket=self.bucket)

    def stage(self, key: str) -> tuple[Path, Sink]:
        with self._translated():
            fd, name = tempfile.mkstemp(dir=self._staging, suffix=".part")
        return Path(name), TranslatedFile(os.fdopen(fd, "wb"), self._staging_failed)

    def commit(self, key: str, staged: Path, sha256: str) -> None:
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}}
        extra["ContentType"] = "application/gzip" if key.endswith(".gz") else "application/json"
        if self.encryption.mode:
            extra["ServerSideEncryption"] = self.encryption.mode
        if self.encryption.kms_key_id:
            extra["SSEKMSKeyId"] = self.encryption.kms_key_id
        with self._translated(key):
            self.client.upload_file(
                str(staged), self.bucket, self._key(key), ExtraArgs=extra, Config=self.transfer
            )

    def size(self, key: str) -> int | None:
        with self._translated(key):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as error:
                if _code(error) in _MISSING_CODES:
                    return None
                raise
        return int(head["ContentLength"])

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[IO[bytes]]:
        with self._translated(key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as error:
                if _code(error) in _MISSING_CODES:
                    raise ObjectMissing(
                        f"object {key} is missing from {self.destination}"
                    ) from None
                raise
            body = response["Body"]
            try:
                yield body
            finally:
                body.close()

    def remove(self, key: str) -> None:
        """Delete the object and abort multipart uploads a killed run left behind for it."""
        full = self._key(key)
        with self._translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=full)
            pending = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=full)
            for upload in pending.get("Uploads", []):
                if upload["Key"] == full:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload["UploadId"]
                    )

    def close(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)
        self.client.close()

    def _key(self, key: str) -> str:
        return f"{self.destination.prefix}/{key}" if self.destination.prefix else key

    def _staging_failed(self, error: OSError) -> ExamctlError:
        return ServiceUnavailable(
            f"cannot stage an archive object in {self._staging}: {error.strerror or error}"
        )

    @contextlib.contextmanager
    def _translated(self, key: str | None = None) -> Iterator[None]:
        """boto3's failures, as the errors examctl reports (exit 2 or 3)."""
        where = f"s3://{self.bucket}/{self._key(key)}" if key else str(self.destination)
        try:
            yield
        except NoCredentialsError:
            raise UsageError(
                "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile "
                "or an instance role)"
            ) from None
        except S3UploadFailedError as error:
            raise ServiceUnavailable(f"S3 upload to {where} failed: {error}") from error
        except ClientError as error:
            raise ServiceUnavailable(self._client_error(error, where)) from error
        except BotoCoreError as error:
            raise ServiceUnavailable(f"S3 unreachable at {self.endpoint}: {error}") from error
        except OSError as error:
            raise self._staging_failed(error) from error

    def _client_error(self, error: ClientError, where: str) -> str:
        code = _code(error)
        if code in ("NoSuchBucket",) or (
            code in ("404", "NotFound") and where == str(self.destination)
        ):
            return (
                f"bucket {self.bucket} does not exist at {self.endpoint} "
                "(examctl creates no buckets)"
            )
        if code in ("403", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"):
            return f"access to {where} denied ({code}): check the credentials and bucket policy"
        message = error.response.get("Error", {}).get("Message", "")
        return f"S3 refused a request on {where}: {code} {message}".strip()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
