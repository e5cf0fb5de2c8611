"""The deploy side: Python that runs only on the operator's machine, never in the image.

    deploy_config.py   the deploy variables of the catalog, their checks and derived values (image tag, names)
    plan.py            one deploy's plan: the configuration read once, every derived value, the manifests rendered
    manifests.py       the Kubernetes manifests, rendered as data
    yaml_text.py       the one YAML writer (manifests and the alert rules file)
    alerts.py          the Prometheus alert rules (monitoring/temporal-worker-alerts.yaml)
    replay.py          record histories and replay them against this checkout (developers run it too)
    rollout.py         what the deploy scripts ask Temporal: the replay gate, versions, routing

These modules import the app's modules (config, bootstrap, worker's workflows); no module the image runs imports
one of these (tests/app/test_layout.py checks it), and the image holds none of them (the Dockerfile copies the
root's *.py). Each command-line module runs as a file from anywhere, `python deploy/rollout.py ...`, or as
`python -m deploy.rollout ...` from the repository's root.
"""

from __future__ import annotations

from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
"""The repository's root: the app's modules, config.env, the Dockerfile and the git checkout the image tag names."""
