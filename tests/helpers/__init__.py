"""What the tests share: helpers, stand-ins and vendored data. Nothing here is a test.

    processes.py           free loopback ports, the Temporal dev server, our programs run as users run them
    stopping.py            servers that make our programs wait (silent, first call only), and timing their stop
    fake_keyvault.py       an HTTPS Key Vault stand-in, and the environment that gives Azure identity only the stub az
    static_keys.py         a key provider with fixed keys in memory
    auth_proxy.py          a Temporal that enforces an API key or client certificate: a gRPC proxy to the dev server
    azurite.py             Azurite (the Azure Storage emulator from npm) on a free port, plain or HTTPS with OAuth
    storage_driver.py      the payload storage driver's contexts, payloads of a size, a PayloadStorage for one step
    codec_requests.py      the codec server's /decode and /encode bodies, plain and encrypted payloads, its answers
    payloads.py            payloads as the server stores them, read from a workflow's history
    failing_workflow.py    a workflow whose activity fails for good (the failure metrics)
    changed_workflows.py   YourWorkflow changed incompatibly with recorded runs, and the same change made safe
    rollout_workflows.py   two builds of one workflow type for the versioned rollouts, B unable to replay A
    promql.py              the dashboard's and alert rules' PromQL taken apart, and what a /metrics page offers
    start_sh.py            a fresh copy of the app for ./start.sh, and its environment with encryption on
    browser.py             headless Chromium for the Web UI checks, reaching loopback only
    deploy_harness.py      a private copy of the scripts with stub az/docker/kubectl, runs, manifest parsing
    manifest_checks.py     KEDA's schemas and temporal scaler (keda/), the PodMonitor and PrometheusRule schemas
                           (prometheus/), and the Kubernetes version to validate against
    image.py               the worker image built with podman and run as a Kubernetes node runs it (tests/image)
    image_chroot.sh        runs a command in the image's file system as a Kubernetes node runs the container (image.py)
    stubs/                 the az/docker/kubectl stand-in (stub.py) and its shell wrappers
    keda/                  KEDA's CRD schemas and temporal scaler keys, vendored
    prometheus/            the PodMonitor and PrometheusRule schemas, vendored, and promtool's tests of the alert rules

pytest.ini puts tests/ on the import path, so tests import `from helpers.processes import ...`.
"""
