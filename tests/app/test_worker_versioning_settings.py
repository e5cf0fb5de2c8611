"""Worker Deployment Versioning's settings in process: TEMPORAL_DEPLOYMENT_NAME and TEMPORAL_WORKER_BUILD_ID make
worker.py's deployment config for the SDK, pinned by default or auto-upgrade; without them it is unversioned.

The real worker.py registering as its version, and refusing one name without the other:
tests/e2e/test_worker_versioning.py.
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior

import config
import worker


def settings(**values: str) -> config.Settings:
    return config.load_settings({"CONFIG_ENV_FILE": "/nonexistent/config.env", **values})


def test_both_names_make_a_versioned_worker_pinned_by_default() -> None:
    loaded = settings(TEMPORAL_DEPLOYMENT_NAME="team/orders", TEMPORAL_WORKER_BUILD_ID="1a2b3c4d5e6f")
    assert loaded.versioning == config.VersioningSettings("team/orders", "1a2b3c4d5e6f", "pinned")
    deployment = worker.deployment_config(loaded)
    assert deployment is not None and deployment.use_worker_versioning
    assert (deployment.version.deployment_name, deployment.version.build_id) == ("team/orders", "1a2b3c4d5e6f")
    assert deployment.default_versioning_behavior == VersioningBehavior.PINNED


def test_auto_upgrade_is_the_other_default_and_without_names_the_worker_is_unversioned() -> None:
    loaded = settings(
        TEMPORAL_DEPLOYMENT_NAME="orders", TEMPORAL_WORKER_BUILD_ID="v2", WORKER_VERSIONING_BEHAVIOR="auto-upgrade"
    )
    assert worker.deployment_config(loaded).default_versioning_behavior == VersioningBehavior.AUTO_UPGRADE
    assert settings().versioning is None and worker.deployment_config(settings()) is None
    assert settings(WORKER_VERSIONING_BEHAVIOR="auto-upgrade").versioning is None
