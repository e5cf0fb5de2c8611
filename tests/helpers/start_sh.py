"""`./start.sh` as a user runs it: a fresh copy of the app's files, and its environment with encryption on."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.processes import REPO_DIR, base_environment

TEST_VENV = Path(sys.prefix)
INSTALLED_AZURITE = REPO_DIR / ".azurite" / "node"  # where .ci/run and start.sh install it


def copy_of_repo(destination: Path) -> Path:
    """The app's files (and deploy/, through which start.sh reads the configuration) in a fresh folder, its .venv
    being the test environment (already installed), and the Azurite that .ci/run installed (.azurite/node), when
    there is one, as if start.sh had installed it."""
    destination.mkdir()
    for pattern in ("*.py", "deploy/*.py", "*.sh", "requirements*.txt", "requirements*.lock", "scripts/azurite.sh"):
        for source in REPO_DIR.glob(pattern):
            (destination / source.relative_to(REPO_DIR)).parent.mkdir(exist_ok=True)
            shutil.copy2(source, destination / source.relative_to(REPO_DIR))
    (destination / ".venv").symlink_to(TEST_VENV)
    if INSTALLED_AZURITE.is_dir():
        (destination / ".azurite").mkdir()
        (destination / ".azurite" / "node").symlink_to(INSTALLED_AZURITE)
    return destination


def encrypted_start_sh_environment(
    tmp_path: Path, vault: FakeKeyVault, secret_name: str, port: int, ui_port: int, codec_port: int, **overrides: str
) -> dict[str, str]:
    """What `./start.sh` needs to run everything with encryption on: ports, the test vault, the stub `az`."""
    base = base_environment(
        tmp_path,
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}",
        TEMPORAL_DEV_SERVER_UI_PORT=str(ui_port),
        CODEC_SERVER_PORT=str(codec_port),
        CLIENT_INTERVAL_SECONDS="1",
        **overrides,
    )
    return azure_cli_environment(base) | keyvault_environment(vault, secret_name)
