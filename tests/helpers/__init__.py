"""What the tests share: helpers, stand-ins and vendored data. Nothing here is a test.

    processes.py       free loopback ports, the Temporal dev server, our programs run as users run them
    deploy_harness.py  a private copy of the scripts with stub az/docker/kubectl, runs, manifest parsing
    manifest_checks.py KEDA's schemas and temporal scaler (keda/) and the Kubernetes version to validate against
    fake_keyvault.py   an HTTPS Key Vault stand-in, and the environment that gives Azure identity only the stub az
    static_keys.py     a key provider with fixed keys in memory
    azurite.py         Azurite (the Azure Storage emulator from npm) on a free port, plain or HTTPS with OAuth
    start_sh.py        a fresh copy of the app for ./start.sh, and its environment with encryption on
    payloads.py        payloads as the server stores them, read from a workflow's history
    stubs/             the az/docker/kubectl stand-in (stub.py) and its shell wrappers
    keda/              KEDA's CRD schemas and temporal scaler keys, vendored

pytest.ini puts tests/ on the import path, so tests import `from helpers.processes import ...`.
"""
