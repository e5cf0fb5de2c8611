"""Large payloads in Azure Blob Storage: the driver for Temporal's external payload storage.

Public API:
    storage = PayloadStorage(settings.payload_storage, namespace)   # PayloadStorageError on a bad identity setup
    await storage.check()                # the container answers, or PayloadStorageError saying what to check
    storage.external_storage() -> ExternalStorage       # for DataConverter(external_storage=...)
    storage.driver                       # the AzureBlobStorageDriver (a temporalio.converter.StorageDriver)
    await storage.close()
    await storage.driver.fetch(claim, max_bytes)        # one payload, bounded: what the codec server uses
    storage.driver.check(claim)          # ReferenceRefusedError unless the container and blob name are ours
    reference_claim(payload) -> StorageDriverClaim | None   # the claim in a reference payload, if it is one
    check_reference_namespace(claim, namespace)          # ReferenceRefusedError outside `v0/ns/{namespace}/`
    TaskScopedStorage, TaskScopedDriver, TaskBudget      # what one workflow task may fetch (see below)
    PayloadStorageError, ReferenceRefusedError, PayloadTooLargeError, TaskBudgetExceededError

Temporal refuses payloads over 2 MiB. The SDK's external storage (`DataConverter(external_storage=...)`)
stores every payload at or above PAYLOAD_STORAGE_THRESHOLD_BYTES through a driver and puts a small
reference in the history instead, transparently for workflow code. The SDK ships drivers for S3 and
GCS; this is the Azure one, with their contract:

  * Blob names are content-addressed under a prefix scoped by namespace and workflow or activity:
        v0/ns/{namespace}/wt/{workflow type}/wi/{workflow id}/ri/{run id}/d/sha256/{hex digest}
        v0/ns/{namespace}/at/{activity type}/ai/{activity id}/ri/{run id}/d/sha256/{hex digest}
    (segments percent-encoded, "null" for a missing value; `v0/ns/{namespace}/d/sha256/{hex}` when the
    name would exceed 1024 characters), so the same bytes in the same scope are stored once: a blob
    that exists already is not uploaded again.
  * The claim in the history holds the container and the blob name, nothing else: no account, key or
    SAS token. The blob name ends in the SHA-256 of the stored bytes, and a retrieved blob whose bytes
    do not hash to it is an error naming the blob (it was altered after it was written).
  * A payload over PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES is neither stored nor fetched.
  * What one workflow task fetches is bounded as a whole (TaskScopedStorage, one TaskBudget per SDK
    serialization context, which the SDK makes per workflow activation): at most MAX_REFERENCES_PER_TASK
    (1000) references, counted and checked first; their blobs' sizes read from their properties
    FETCH_CONCURRENCY (4) at a time; their total reserved against PAYLOAD_STORAGE_MAX_TASK_BYTES (64 MiB)
    before any download, else TaskBudgetExceededError naming the workflow and the bytes asked for, with
    nothing downloaded; then downloaded 4 at a time, each no further than its reserved size. A task over
    its budget fails (and is retried, failing again); other workflows on the worker keep running.
  * References are held to a namespace: check_reference_namespace(claim, namespace) is the one rule, blob
    names under `v0/ns/{namespace}/` only (a name without a namespace is refused). The worker's driver
    applies it with TEMPORAL_NAMESPACE, the codec server with the request's namespace.

The data converter applies the codec before storing, so with encryption on the blobs hold ciphertext.

Claims come from histories, so from whoever can start or signal a workflow: a claim is only followed
into this process's own container and only to a blob name of the shape above, so the pod's identity can
never be made to read another container (a confused deputy), and nothing is fetched for a claim that
could not be ours.

Sign-in: with PAYLOAD_STORAGE_ACCOUNT_URL the process's Azure identity (azure_identity.py's
DefaultAzureCredential: workload identity in AKS, `az login` on a laptop), which needs the role
"Storage Blob Data Contributor" on the container; with PAYLOAD_STORAGE_CONNECTION_STRING the key or SAS
in it (Azurite, local use). Every error names the account, container and blob, and says what to check.

For start.sh, which never sees the connection string (a secret): `python payload_storage.py status` prints
`off`, `on`, or `emulator 127.0.0.1:PORT` when the connection string points at a local emulator over http
(start.sh starts Azurite there when nothing listens), and `python payload_storage.py create-container`
creates the container if it is missing, within CREATE_CONTAINER_TIMEOUT_SECONDS (30 s): exit 0 when it exists
or was created, 1 when it cannot be (or no answer in time), 2 on a wrong command line, 143 / 130 with a
one-line message when SIGTERM / SIGINT stops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import signal
import string
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity.aio import DefaultAzureCredential
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, ExponentialRetry
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import (
    ActivitySerializationContext,
    ExternalStorage,
    JSONProtoPayloadConverter,
    SerializationContext,
    StorageDriver,
    StorageDriverActivityInfo,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from azure_identity import IDENTITY_ADVICE, default_credential
from config import DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES, PayloadStorageSettings, connection_string_fields
from log_format import one_line, shown

DRIVER_NAME = "azure.blobdriver"
HASH_ALGORITHM = "sha256"
MAX_BLOB_NAME_CHARACTERS = 1024  # Azure's limit on a blob name
# Characters written as they are in a blob name segment; every other byte is %XX (as the S3 driver does).
_SAFE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!-_.*'()")
# What a claim's blob name may be: ours, ending in the digest of its content.
_BLOB_NAME = re.compile(r"v0(/[A-Za-z0-9!_.*'()%-]+)*/d/sha256/(?P<digest>[0-9a-f]{64})")
_REFERENCE_MESSAGE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
# How much of a refused reference's container or blob name a message shows (log_format.shown cuts the rest).
SHOWN_REFERENCE_CHARACTERS = 80
# One workflow task's references: at most this many (counted before anything is asked of the storage), their
# sizes read and their blobs downloaded this many at a time, and all of them together at most
# PAYLOAD_STORAGE_MAX_TASK_BYTES (config.py), reserved from the blobs' properties before any download.
MAX_REFERENCES_PER_TASK = 1000
FETCH_CONCURRENCY = 4
# How long the start-up check of the container may take (the identity's token included).
CHECK_TIMEOUT_SECONDS = 30.0
# The Azure SDK's own retries of one request: a few seconds at most, because a workflow task has 10 s and
# Temporal retries the task (or activity) anyway. Its default (15 s, 18 s, 24 s) outlasts the task.
RETRY = {"initial_backoff": 1, "increment_base": 2, "retry_total": 2, "random_jitter_range": 1}
CONNECTION_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
ROLE = "Storage Blob Data Contributor"
# `create-container` (start.sh) gives up after this long, whatever the endpoint does (the SDK's retries included).
CREATE_CONTAINER_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")
logger = logging.getLogger(__name__)


class PayloadStorageError(Exception):
    """A payload that cannot be stored or fetched, in one line naming the account, container and blob."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message
        """The short cause, without the account (what the codec server may tell a browser)."""


class ReferenceRefusedError(PayloadStorageError):
    """A claim this process does not follow: another container, or a blob name that is not ours."""


class PayloadTooLargeError(PayloadStorageError):
    """A payload over the maximum size; nothing more of it is read."""


class TaskBudgetExceededError(PayloadTooLargeError):
    """One workflow task's references ask for more than PAYLOAD_STORAGE_MAX_TASK_BYTES (or more references than
    MAX_REFERENCES_PER_TASK): the task fails, and nothing more of it is downloaded."""


class TaskBudget:
    """What one workflow task (one SDK serialization context) may fetch, all its references together.

    Shared by every retrieve of the task: the references it has counted, the bytes it has reserved (from
    the blobs' properties, before their download), and its turns for size look-ups and downloads.
    """

    def __init__(self, max_bytes: int, described: str = "a workflow task") -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be greater than zero")
        self.max_bytes = max_bytes
        self.described = described
        """Whose task this is, for the error (the workflow's id, type and run as far as the SDK tells)."""
        self.references = 0
        self.reserved = 0
        self.turns = asyncio.Semaphore(FETCH_CONCURRENCY)
        self._named = False

    def name_target(self, target: StorageDriverWorkflowInfo | StorageDriverActivityInfo | None) -> None:
        """Describe the task by the SDK's store context (the first one wins: later ones are commands' targets)."""
        if self._named or target is None:
            return
        self._named = True
        kind = "workflow" if isinstance(target, StorageDriverWorkflowInfo) else "activity"
        parts = [f"{kind} {shown(target.id or '?', SHOWN_REFERENCE_CHARACTERS)}"]
        if target.type:
            parts.append(f"type {shown(target.type, SHOWN_REFERENCE_CHARACTERS)}")
        if target.run_id:
            parts.append(f"run {shown(target.run_id, SHOWN_REFERENCE_CHARACTERS)}")
        parts.append(f"namespace {shown(target.namespace, SHOWN_REFERENCE_CHARACTERS)}")
        self.described = ", ".join(parts)

    def count(self, references: int) -> None:
        """Count references before anything is asked of the storage; TaskBudgetExceededError past the cap."""
        self.references += references
        if self.references > MAX_REFERENCES_PER_TASK:
            raise TaskBudgetExceededError(
                f"The task of {self.described} carries {self.references} payload storage references, over the "
                f"{MAX_REFERENCES_PER_TASK} one task may carry; nothing was downloaded. Pass fewer large values "
                "per workflow task (a list of blob names your activities read, say)",
                f"over {MAX_REFERENCES_PER_TASK} references",
            )

    def reserve(self, sizes: Sequence[int]) -> None:
        """Reserve the bytes of blobs about to be downloaded, or TaskBudgetExceededError without downloading them."""
        asked = self.reserved + sum(sizes)
        if asked > self.max_bytes:
            raise TaskBudgetExceededError(
                f"The task of {self.described} asked for {asked} bytes of payloads from payload storage "
                f"({self.references} references), over the {self.max_bytes} one task may fetch "
                "(PAYLOAD_STORAGE_MAX_TASK_BYTES); nothing more was downloaded. Pass fewer or smaller large values "
                "per workflow task, or raise PAYLOAD_STORAGE_MAX_TASK_BYTES and MEMORY_LIMIT with it",
                f"{asked} bytes asked, over the {self.max_bytes} one task may fetch",
            )
        self.reserved = asked


class AzureBlobStorageDriver(StorageDriver):
    """The `temporalio.converter.StorageDriver` for one Azure Blob Storage container.

    With a `namespace` (the worker's and client's TEMPORAL_NAMESPACE) it follows only references under
    `v0/ns/{namespace}/`, and stores a payload without a target there; without one (the codec server, which
    serves several namespaces) the caller checks each reference with `check_reference_namespace`.
    """

    def __init__(
        self,
        container: ContainerClient,
        max_payload_bytes: int,
        name: str = DRIVER_NAME,
        *,
        namespace: str | None = None,
        max_task_bytes: int = DEFAULT_PAYLOAD_STORAGE_MAX_TASK_BYTES,
    ) -> None:
        if max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be greater than zero")
        if max_task_bytes < max_payload_bytes:
            raise ValueError("max_task_bytes must be at least max_payload_bytes")
        self._container = container
        self._max_payload_bytes = max_payload_bytes
        self._max_task_bytes = max_task_bytes
        self._name = name
        self._namespace = namespace

    @property
    def account(self) -> str:
        return self._container.account_name or "?"

    @property
    def container(self) -> str:
        return self._container.container_name

    @property
    def max_payload_bytes(self) -> int:
        return self._max_payload_bytes

    @property
    def max_task_bytes(self) -> int:
        return self._max_task_bytes

    @property
    def namespace(self) -> str | None:
        return self._namespace

    def name(self) -> str:
        return self._name

    def type(self) -> str:
        return DRIVER_NAME

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        """Store each payload under its content address (unless that blob exists) and return its claim."""
        prefix = blob_prefix(context, self._namespace)
        short_prefix = namespace_prefix(context, self._namespace)
        return await _gather_or_cancel([self._store(prefix, short_prefix, payload) for payload in payloads])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """The payloads the claims name, within a budget of their own (what is not scoped to a task: a client's
        call). The worker's tasks go through TaskScopedStorage, which shares one budget per task."""
        return await self.retrieve_within(TaskBudget(self._max_task_bytes), claims)

    async def retrieve_within(self, budget: TaskBudget, claims: Sequence[StorageDriverClaim]) -> list[Payload]:
        """The payloads the claims name, each checked against the digest in its blob name, within `budget`.

        In this order, so that a task over its budget downloads nothing: the references are counted and
        checked (container, name, namespace), the blobs' sizes read from their properties (FETCH_CONCURRENCY
        at a time), their total reserved in the budget, and only then are they downloaded, as many at a time.
        """
        budget.count(len(claims))
        checked = [self._checked(claim) for claim in claims]
        if self._namespace is not None:
            for claim in claims:
                check_reference_namespace(claim, self._namespace)
        sizes = await _bounded(budget.turns, [self._size(blob_name) for blob_name, _ in checked])
        budget.reserve(sizes)
        return await _bounded(
            budget.turns,
            [self._download(blob_name, digest, size) for (blob_name, digest), size in zip(checked, sizes, strict=True)],
        )

    async def fetch(self, claim: StorageDriverClaim, max_bytes: int | None = None) -> Payload:
        """One claimed payload, refused without a read unless it is ours, and at most `max_bytes` long
        (default PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES): a blob over it is not read further than that."""
        blob_name, digest = self._checked(claim)
        limit = self._max_payload_bytes if max_bytes is None else min(max_bytes, self._max_payload_bytes)
        return await self._download(blob_name, digest, limit, connections=4)

    async def _size(self, blob_name: str) -> int:
        """The blob's size from its properties, or PayloadTooLargeError over PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES."""
        try:
            properties = await self._container.get_blob_client(blob_name).get_blob_properties()
        except AzureError as error:
            raise self.failure("read", blob_name, error) from error
        size = int(properties.size or 0)
        if size > self._max_payload_bytes:
            raise self._too_large(blob_name, size, self._max_payload_bytes)
        return size

    async def _download(self, blob_name: str, digest: str, limit: int, connections: int = 1) -> Payload:
        """The blob's payload, reading at most `limit` bytes of it (one more tells a larger blob), its chunks
        over at most `connections` connections."""
        try:
            downloader = await self._container.get_blob_client(blob_name).download_blob(
                offset=0, length=limit + 1, max_concurrency=connections
            )
            size = _blob_size(downloader.properties)
            if size > limit:
                raise self._too_large(blob_name, size, limit)
            data = await downloader.readall()
        except HttpResponseError as error:
            if error.status_code != 416:  # a range of an empty blob: a payload that serialized to no bytes
                raise self.failure("read", blob_name, error) from error
            data = b""
        except AzureError as error:
            raise self.failure("read", blob_name, error) from error
        if len(data) > limit:  # the blob grew between its properties and its download
            raise self._too_large(blob_name, len(data), limit)
        if hashlib.sha256(data).hexdigest() != digest:
            raise PayloadStorageError(
                f"Payload blob {self._where(blob_name)} failed its integrity check: its bytes do not hash to the "
                "SHA-256 in its name, so it was altered after it was written. Restore it (blob versioning or soft "
                "delete keeps earlier versions) and the task is retried",
                "the blob was altered after it was written (its SHA-256 does not match its name)",
            )
        try:
            return Payload.FromString(data)
        except DecodeError:
            raise PayloadStorageError(
                f"Payload blob {self._where(blob_name)} is not a serialized Temporal payload",
                "the blob is not a serialized Temporal payload",
            ) from None

    def _too_large(self, blob_name: str, size: int, limit: int) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Payload blob {self._where(blob_name)} holds {size} bytes, over the {limit} this process fetches "
            "(PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES)",
            f"the blob holds {size} bytes, over the {limit} fetched per request",
        )

    async def _store(self, prefix: str, short_prefix: str, payload: Payload) -> StorageDriverClaim:
        data = payload.SerializeToString()
        if len(data) > self._max_payload_bytes:
            raise PayloadTooLargeError(
                f"Payload of {len(data)} bytes is over PAYLOAD_STORAGE_MAX_PAYLOAD_BYTES={self._max_payload_bytes}, "
                f"so it is not stored in container {self.container!r} of storage account {self.account!r}: "
                "raise the maximum or make the payload smaller"
            )
        digest = hashlib.sha256(data).hexdigest()
        blob_name = f"{prefix}/d/{HASH_ALGORITHM}/{digest}"
        if len(blob_name) > MAX_BLOB_NAME_CHARACTERS:
            blob_name = f"{short_prefix}/d/{HASH_ALGORITHM}/{digest}"  # keeps the namespace, for access policies
        blob = self._container.get_blob_client(blob_name)
        try:
            if not await blob.exists():
                await blob.upload_blob(
                    data,
                    overwrite=False,  # If-None-Match: *, so a concurrent writer of the same bytes is no conflict
                    content_settings=ContentSettings(content_type="application/octet-stream"),
                    max_concurrency=4,
                )
        except ResourceExistsError:
            pass  # written meanwhile by another process: the same name means the same bytes
        except AzureError as error:
            raise self.failure("write", blob_name, error) from error
        return StorageDriverClaim(claim_data={"container": self.container, "blob": blob_name})

    def check(self, claim: StorageDriverClaim) -> None:
        """ReferenceRefusedError unless the claim names this container and a blob name this driver writes."""
        self._checked(claim)

    def _checked(self, claim: StorageDriverClaim) -> tuple[str, str]:
        """The claim's blob name and digest, or ReferenceRefusedError before anything is read."""
        data = dict(claim.claim_data)
        container, blob_name = data.get("container", ""), data.get("blob", "")
        if container != self.container:
            named = shown(container, SHOWN_REFERENCE_CHARACTERS)
            raise ReferenceRefusedError(
                f"Refused a payload reference to container {named}: this process reads only container "
                f"{self.container!r} of storage account {self.account!r} (PAYLOAD_STORAGE_CONTAINER). "
                "A reference written with another container needs a process configured with it",
                f"the reference names container {named}, not this codec server's",
            )
        match = _BLOB_NAME.fullmatch(blob_name)
        if (
            not match
            or len(blob_name) > MAX_BLOB_NAME_CHARACTERS
            or any(s in (".", "..") for s in blob_name.split("/"))
        ):
            named = shown(blob_name, SHOWN_REFERENCE_CHARACTERS)
            raise ReferenceRefusedError(
                f"Refused a payload reference to blob {named} in container {self.container!r}: it is not "
                "a name this driver writes (v0/.../d/sha256/<digest>)",
                f"the reference names blob {named}, which is not a name this driver writes",
            )
        return blob_name, match["digest"]

    def _where(self, blob_name: str) -> str:
        return f"{blob_name!r} in container {self.container!r} of storage account {self.account!r}"

    def failure(self, action: str, blob_name: str | None, error: AzureError) -> PayloadStorageError:
        """What failed, where, and what to check, by kind of failure; its `reason` leaves out the account
        and the SDK's details (what a codec server may tell a browser)."""
        if blob_name:
            where = f"payload blob {self._where(blob_name)}"
            shown = f"blob {blob_name!r} in container {self.container!r}"
        else:
            where = shown = f"container {self.container!r} of storage account {self.account!r}"
        what, detail, advice = _explain(error, self.account, self.container, blob_name)
        return PayloadStorageError(
            f"Cannot {action} {where}: {what}{detail}. {advice}", f"cannot {action} {shown}: {what}"
        )


def _explain(error: AzureError, account: str, container: str, blob_name: str | None) -> tuple[str, str, str]:
    """(what happened, the SDK's detail, what to check)."""
    code = str(getattr(getattr(error, "error_code", None), "value", getattr(error, "error_code", None)) or "")
    role = (
        f'Give the identity the role "{ROLE}" on the container (deploy.sh prints the az role assignment create '
        "command); role assignments take a few minutes to apply"
    )
    if isinstance(error, ResourceNotFoundError) and (code == "ContainerNotFound" or not blob_name):
        return (
            "the container does not exist",
            "",
            f"Create it: az storage container create --account-name {account} --name {container} --auth-mode login "
            "(or check PAYLOAD_STORAGE_CONTAINER)",
        )
    if isinstance(error, ResourceNotFoundError):
        return (
            "the blob does not exist",
            "",
            "It was deleted (a lifecycle-management policy deletes blobs PAYLOAD_STORAGE_RETENTION_DAYS after they "
            "were written) or written to another account: check that every process uses the same "
            "PAYLOAD_STORAGE_ACCOUNT_URL and PAYLOAD_STORAGE_CONTAINER",
        )
    if isinstance(error, ClientAuthenticationError) and error.response is None:
        return "no Azure identity could get a token", f" ({one_line(error)})", IDENTITY_ADVICE
    if isinstance(error, HttpResponseError) and error.status_code == 403 and code == "AuthenticationFailed":
        return (
            "the storage account did not accept the credentials",
            f" (HTTP 403 {code})",
            f"{IDENTITY_ADVICE}; with a connection string, check its key or SAS (and the SAS's expiry)",
        )
    if isinstance(error, HttpResponseError) and error.status_code == 403:
        return "access was refused", f" (HTTP 403{_code(code)})", role
    if isinstance(error, HttpResponseError) and error.status_code == 401:
        return "the storage account refused the credentials", f" (HTTP 401{_code(code)})", IDENTITY_ADVICE
    if isinstance(error, HttpResponseError) and error.status_code:
        return (
            f"the storage account answered HTTP {error.status_code}",
            _code(code),
            "Check PAYLOAD_STORAGE_ACCOUNT_URL",
        )
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return (
            "the storage account could not be reached",
            f" ({one_line(error)})",
            "Check PAYLOAD_STORAGE_ACCOUNT_URL (or the connection string), DNS, and the network path to the account "
            "(its firewall, private endpoint)",
        )
    return "the request failed", f" ({one_line(error)})", "Check PAYLOAD_STORAGE_ACCOUNT_URL and the network path"


class PayloadStorage:
    """The container client, its credential and the driver, built from the settings; close() when done."""

    def __init__(self, settings: PayloadStorageSettings, namespace: str | None = None) -> None:
        """`namespace`: the Temporal namespace whose references alone the driver follows (the worker's and
        client's); None for the codec server, which checks each request's namespace itself."""
        if not settings.enabled:
            raise ValueError("PayloadStorage needs PAYLOAD_STORAGE_ACCOUNT_URL or PAYLOAD_STORAGE_CONNECTION_STRING")
        self._settings = settings
        self._credential: DefaultAzureCredential | None = None
        options: dict[str, Any] = {
            "retry_policy": ExponentialRetry(**RETRY),
            "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
            "read_timeout": READ_TIMEOUT_SECONDS,
            "connection_verify": settings.ca_file or True,
            "logging_enable": False,
        }
        try:
            if settings.connection_string:
                service = BlobServiceClient.from_connection_string(settings.connection_string, **options)
            else:
                self._credential = default_credential(PayloadStorageError, "payload storage")
                service = BlobServiceClient(str(settings.account_url), credential=self._credential, **options)
        except ValueError as error:  # the SDK's own check of the URL or connection string (never shown)
            raise PayloadStorageError(
                f"Cannot use the payload storage settings: {one_line(error)}. "
                "Check PAYLOAD_STORAGE_ACCOUNT_URL or PAYLOAD_STORAGE_CONNECTION_STRING"
            ) from None
        # The SDK logs every request at INFO; ours are one line per failure.
        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        self._service = service
        self._container = service.get_container_client(settings.container)
        self.driver = AzureBlobStorageDriver(
            self._container, settings.max_payload_bytes, namespace=namespace, max_task_bytes=settings.max_task_bytes
        )

    @property
    def account(self) -> str:
        return self.driver.account

    @property
    def container(self) -> str:
        return self.driver.container

    def external_storage(self) -> ExternalStorage:
        """The SDK's external storage with this driver, offloading payloads from the configured threshold; what
        one workflow task fetches is bounded as a whole (TaskScopedStorage)."""
        return TaskScopedStorage(drivers=[self.driver], payload_size_threshold=self._settings.threshold_bytes)

    async def check(self) -> None:
        """Ask for the container's properties: proves the endpoint, the identity and the container, bounded in time."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await self._container.get_container_properties()
        except TimeoutError:
            raise PayloadStorageError(
                f"Cannot reach container {self.container!r} of storage account {self.account!r}: no answer within "
                f"{CHECK_TIMEOUT_SECONDS:g}s. Check PAYLOAD_STORAGE_ACCOUNT_URL, the network path to the account, "
                f"and the identity. {IDENTITY_ADVICE}"
            ) from None
        except AzureError as error:
            raise self.driver.failure("use", None, error) from None

    async def create_container(self) -> bool:
        """Create the container if it is missing (the local emulator); whether it was created."""
        try:
            await self._container.create_container()
        except ResourceExistsError:
            return False
        except AzureError as error:
            raise self.driver.failure("create", None, error) from None
        return True

    async def close(self) -> None:
        await self._service.close()
        if self._credential is not None:
            await self._credential.close()


class TaskScopedDriver(StorageDriver):
    """The driver as one workflow task sees it: its retrieves share the task's TaskBudget."""

    def __init__(self, driver: AzureBlobStorageDriver, budget: TaskBudget) -> None:
        self.driver = driver
        self.budget = budget

    def name(self) -> str:
        return self.driver.name()

    def type(self) -> str:
        return self.driver.type()

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        return await self.driver.store(context, payloads)

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        return await self.driver.retrieve_within(self.budget, claims)


@dataclasses.dataclass(frozen=True)
class TaskScopedStorage(ExternalStorage, WithSerializationContext):
    """The SDK's ExternalStorage, with one TaskBudget per serialization context.

    The SDK gives its data converter a serialization context for each workflow activation (a workflow task)
    before it decodes the activation's payloads (`DataConverter.with_context`, then the store context of the
    same workflow); this gives each such copy a budget of its own, shared by every retrieve of that task,
    so a task's references together are bounded, not each one alone. The SDK passes no context to the
    driver's retrieve itself (StorageDriverRetrieveContext is empty), hence the wrapper.
    """

    def with_context(self, context: SerializationContext) -> TaskScopedStorage:
        driver = _base_driver(self.drivers[0])
        scoped = TaskScopedDriver(driver, TaskBudget(driver.max_task_bytes, _described(context)))
        return dataclasses.replace(self, drivers=[scoped])

    def _with_store_context(self, ctx: StorageDriverStoreContext) -> ExternalStorage:
        # The SDK binds the workflow's store context (its type and run id) right after with_context.
        for driver in self.drivers:
            if isinstance(driver, TaskScopedDriver):
                driver.budget.name_target(ctx.target)
        return super()._with_store_context(ctx)


def _base_driver(driver: StorageDriver) -> AzureBlobStorageDriver:
    if isinstance(driver, TaskScopedDriver):
        return driver.driver
    assert isinstance(driver, AzureBlobStorageDriver)
    return driver


def _described(context: SerializationContext) -> str:
    """Whose task a serialization context is, as far as it tells (the store context adds the type and run)."""
    if isinstance(context, WorkflowSerializationContext):
        return (
            f"workflow {shown(context.workflow_id, SHOWN_REFERENCE_CHARACTERS)}, "
            f"namespace {shown(context.namespace, SHOWN_REFERENCE_CHARACTERS)}"
        )
    if isinstance(context, ActivitySerializationContext):
        return (
            f"activity {shown(context.activity_type or '?', SHOWN_REFERENCE_CHARACTERS)} of workflow "
            f"{shown(context.workflow_id or '?', SHOWN_REFERENCE_CHARACTERS)}, "
            f"namespace {shown(context.namespace, SHOWN_REFERENCE_CHARACTERS)}"
        )
    return "a workflow task"


def check_reference_namespace(claim: StorageDriverClaim, namespace: str) -> None:
    """The one rule for whose references a process follows: only blob names under `v0/ns/{namespace}/`.

    A reference under another namespace, or with none (`v0/d/sha256/...`), raises ReferenceRefusedError
    before anything is read. The worker calls it with its own namespace, the codec server with the request's.
    """
    blob_name = dict(claim.claim_data).get("blob", "")
    if blob_name.startswith(f"v0/ns/{_segment(namespace)}/"):
        return
    named = shown(blob_name, SHOWN_REFERENCE_CHARACTERS)
    raise ReferenceRefusedError(
        f"Refused a payload reference to blob {named}: it is not under namespace {shown(namespace)} "
        f"(v0/ns/{_segment(namespace)}/...), and only that namespace's references are followed here",
        f"the reference names blob {named}, which is not under namespace {shown(namespace)}",
    )


def blob_prefix(context: StorageDriverStoreContext, namespace: str | None = None) -> str:
    """`v0/ns/{namespace}/wt/{type}/wi/{id}/ri/{run id}` (or the activity's), percent-encoded; without a target
    `v0/ns/{namespace}` with the given namespace, else `v0` (a name no namespace check accepts)."""
    target = context.target
    if target is None:
        return namespace_prefix(context, namespace)
    prefix = f"v0/ns/{_segment(target.namespace)}"
    if isinstance(target, StorageDriverWorkflowInfo):
        return f"{prefix}/wt/{_segment(target.type)}/wi/{_segment(target.id)}/ri/{_segment(target.run_id)}"
    if isinstance(target, StorageDriverActivityInfo):
        return f"{prefix}/at/{_segment(target.type)}/ai/{_segment(target.id)}/ri/{_segment(target.run_id)}"
    return prefix


def namespace_prefix(context: StorageDriverStoreContext, namespace: str | None = None) -> str:
    """`v0/ns/{namespace}`: the prefix of a name that would be too long with the workflow's or activity's."""
    target = context.target
    if target is not None:
        return f"v0/ns/{_segment(target.namespace)}"
    return "v0" if namespace is None else f"v0/ns/{_segment(namespace)}"


def _segment(value: str | None) -> str:
    """A blob name segment: every byte outside the safe characters as %XX; "null" for nothing; never . or .."""
    if not value:
        return "null"
    encoded = "".join(chr(byte) if chr(byte) in _SAFE_CHARACTERS else f"%{byte:02X}" for byte in value.encode())
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


_REFERENCES = JSONProtoPayloadConverter()


def reference_claim(payload: Payload) -> tuple[str, StorageDriverClaim] | None:
    """(driver name, claim) when the payload is an external storage reference as the SDK writes it, else None."""
    if payload.metadata.get("encoding") != b"json/protobuf":
        return None
    if payload.metadata.get("messageType") != _REFERENCE_MESSAGE_TYPE:
        return None
    try:
        reference = _REFERENCES.from_payload(payload, ExternalStorageReference)
    except Exception:  # malformed JSON from the caller: not a reference we can follow
        raise ReferenceRefusedError(
            "Refused a malformed payload reference", "the payload reference is malformed"
        ) from None
    return reference.driver_name, StorageDriverClaim(claim_data=dict(reference.claim_data))


async def _gather_or_cancel(steps: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the steps at once; when one fails, cancel the others and raise its error."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _bounded(turns: asyncio.Semaphore, steps: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the steps as `_gather_or_cancel` does, at most as many at once as `turns` allows."""

    async def in_turn(step: Coroutine[Any, Any, T]) -> T:
        try:
            async with turns:
                return await step
        finally:
            step.close()  # a step cancelled before its turn was never started: no "never awaited" warning

    return await _gather_or_cancel([in_turn(step) for step in steps])


def _blob_size(properties: Any) -> int:
    """A downloaded blob's whole size: the total of its Content-Range (a ranged download's `size` is the range's)."""
    content_range = getattr(properties, "content_range", None) or ""
    total = content_range.rpartition("/")[2]
    if total.isdigit():
        return int(total)
    return int(getattr(properties, "size", 0) or 0)


def _code(code: str) -> str:
    return f" {code}" if code else ""


# ---------------------------------------------------------------- the command line (start.sh)


def emulator_endpoint(settings: PayloadStorageSettings) -> str | None:
    """127.0.0.1:PORT when the connection string's blob endpoint is http on 127.0.0.1 or localhost, else None.

    The settings' connection string is one config checked, so reading its fields cannot fail."""
    if not settings.connection_string:
        return None
    fields = connection_string_fields(settings.connection_string)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return "127.0.0.1:10000"
    parts = urlsplit(fields.get("blobendpoint", ""))
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    return f"127.0.0.1:{parts.port or 80}"


def status(settings: PayloadStorageSettings) -> str:
    if not settings.enabled:
        return "off"
    endpoint = emulator_endpoint(settings)
    return f"emulator {endpoint}" if endpoint else "on"


async def _create_container(settings: PayloadStorageSettings) -> None:
    storage = PayloadStorage(settings)
    try:
        created = await storage.create_container()
    finally:
        await storage.close()
    state = "created" if created else "exists"
    print(f"Payload storage: container {storage.container} in storage account {storage.account} {state}")


async def _create_container_within_deadline(settings: PayloadStorageSettings) -> int:
    """create-container bounded: CREATE_CONTAINER_TIMEOUT_SECONDS at most, and ended at once by SIGTERM/SIGINT."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        async with asyncio.timeout(CREATE_CONTAINER_TIMEOUT_SECONDS):
            await _create_container(settings)
    except TimeoutError:
        print(
            f"ERROR: Payload storage: no answer from the storage account within {CREATE_CONTAINER_TIMEOUT_SECONDS:g}s "
            "while creating the container; check PAYLOAD_STORAGE_CONNECTION_STRING (or PAYLOAD_STORAGE_ACCOUNT_URL) "
            "and that the endpoint (Azurite) answers",
            file=sys.stderr,
        )
        return 1
    except asyncio.CancelledError:
        if not received:
            raise
        return _stopped(received[0])
    except PayloadStorageError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _stopped(signum: int) -> int:
    print(
        f"Payload storage: stopped by {signal.Signals(signum).name} before the container was created", file=sys.stderr
    )
    return 128 + signum


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(_stopped(signum))


def _main(arguments: list[str]) -> int:
    """`status` (exit 0) or `create-container`: exit 0 when the container exists or was created, 1 when it
    cannot be (or no answer within CREATE_CONTAINER_TIMEOUT_SECONDS), 2 on a wrong command line, 128 + the
    signal's number (143, 130) when SIGTERM or SIGINT stopped it, with a message and no traceback."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_on_signal)
    import config  # the command line reads the configuration like every program

    if arguments not in (["status"], ["create-container"]):
        print("usage: python payload_storage.py status | create-container", file=sys.stderr)
        return 2
    settings = config.load_settings_or_exit().payload_storage
    if arguments == ["status"]:
        print(status(settings))
        return 0
    if not settings.enabled:
        print("Payload storage is off: nothing to create", file=sys.stderr)
        return 0
    return asyncio.run(_create_container_within_deadline(settings))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
