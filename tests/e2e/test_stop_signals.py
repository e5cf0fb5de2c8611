"""Every program stops on SIGINT and SIGTERM within seconds, whatever it is waiting for.

Each test starts the real programs where they wait: a Temporal address that accepts connections and
never answers, a Key Vault that never answers, a server that answers the connection but no later call
(the worker's namespace check, a workflow start), a task queue no worker polls, or simply running. Once
each program has reached its wait (its log line says so) and a further second has passed, it gets the
signal; it must exit within STOP_BOUND_SECONDS with the documented status and the line that says what
was interrupted, and leave no process behind. Before bootstrap.Stop, a stop during start-up waited for
the step to time out (30 s, then exit 1) and `client.py --count` ignored both signals altogether.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from helpers.fake_keyvault import FakeKeyVault, azure_cli_environment, keyvault_environment
from helpers.processes import AppProcess, base_environment, free_port
from helpers.stopping import FirstCallOnlyProxy, SilentServer, processes_in_session, stop_and_time

# Measured 0.02-0.07 s at a load average of 5 on 2 cores, and 0.04-1.1 s (mostly under 0.25 s) at 8-13 with
# the whole suite running alongside. Issue 11 asks for 2 s; the bound is 5 s so that a busy machine does not
# fail it, and it still fails the 30 s (then exit 1) a stop during start-up used to take.
STOP_BOUND_SECONDS = 5.0
SETTLE_SECONDS = 1.0  # the signal comes this long after the program reached its wait
SECRET = "temporal-encryption-key"
WORKER_READY = r"^Starting worker\.\.\. Awaiting tasks\.$"

stop_signals = pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])


@dataclass
class Waiting:
    """A program that will wait, the line that shows it is waiting, and how it must end."""

    program: AppProcess
    waiting_line: str
    exit_status: int
    stopped_line: str


def assert_each_stops(stop_signal: int, *waiting: Waiting) -> dict[str, float]:
    """Signal each program once it waits; each exits in time, as documented, leaving nothing behind."""
    for entry in waiting:
        entry.program.wait_for_line(entry.waiting_line)
    time.sleep(SETTLE_SECONDS)
    seconds_to_exit = {}
    for entry in waiting:
        code, seconds = stop_and_time(entry.program, stop_signal)
        output = entry.program.output
        seconds_to_exit[" ".join(entry.program.process.args[1:])] = seconds
        print(f"{entry.program.process.args[1].rsplit('/', 1)[-1]} {entry.program.process.args[2:]}: {seconds:.3f}s")
        assert code == entry.exit_status, output
        assert seconds < STOP_BOUND_SECONDS, f"took {seconds:.1f}s to stop:\n{output}"
        assert re.search(entry.stopped_line, output, re.MULTILINE), output
        assert "Traceback" not in output
        assert processes_in_session(entry.program.process.pid) == [], "the program left processes behind"
    return seconds_to_exit


def name_of(stop_signal: int) -> str:
    return signal.Signals(stop_signal).name


@stop_signals
def test_every_program_stops_while_key_vault_never_answers(tmp_path, task_queue, run_app, stop_signal):
    with SilentServer() as vault:
        env = azure_cli_environment(
            base_environment(
                tmp_path,
                TEMPORAL_ADDRESS=vault.address,  # never reached: the key comes first
                TEMPORAL_TASK_QUEUE=task_queue,
                CODEC_SERVER_PORT=str(free_port()),
                KEYVAULT_URL=vault.url,
                KEYVAULT_SECRET_NAME=SECRET,
                KEYVAULT_VERIFY_CHALLENGE_RESOURCE="false",
            )
        )
        doing = "while reading the encryption key from Key Vault"
        reading = r"Reading the encryption key: Key Vault secret"
        name = name_of(stop_signal)
        assert_each_stops(
            stop_signal,
            Waiting(run_app("worker.py", env=env), reading, 0, rf"Worker stopped by {name} {doing}$"),
            Waiting(run_app("client.py", env=env), reading, 0, rf"Client stopped by {name} {doing}$"),
            Waiting(
                run_app("client.py", "--count", "2", env=env),
                reading,
                128 + stop_signal,
                rf"^Stopped by {name} {doing}: 0 of 2 results arrived; no workflow was started$",
            ),
            Waiting(run_app("codec_server.py", env=env), reading, 0, rf"Codec server stopped by {name} {doing}$"),
        )


def test_worker_and_client_stop_while_key_vault_never_answers_for_the_temporal_api_key(tmp_path, task_queue, run_app):
    with SilentServer() as vault:
        env = azure_cli_environment(
            base_environment(
                tmp_path,
                TEMPORAL_ADDRESS=vault.address,  # never reached: the API key comes first
                TEMPORAL_TASK_QUEUE=task_queue,
                KEYVAULT_URL=vault.url,
                TEMPORAL_API_KEY_KEYVAULT_SECRET="temporal-api-key",
                KEYVAULT_VERIFY_CHALLENGE_RESOURCE="false",
            )
        )
        doing = "while reading the Temporal API key from Key Vault"
        reading = r"Reading the Temporal API key: Key Vault secret temporal-api-key"
        assert_each_stops(
            signal.SIGTERM,
            Waiting(run_app("worker.py", env=env), reading, 0, rf"Worker stopped by SIGTERM {doing}$"),
            Waiting(run_app("client.py", env=env), reading, 0, rf"Client stopped by SIGTERM {doing}$"),
        )


@stop_signals
def test_every_program_stops_while_temporal_never_answers(tmp_path, task_queue, run_app, stop_signal):
    with SilentServer() as temporal:
        env = base_environment(tmp_path, TEMPORAL_ADDRESS=temporal.address, TEMPORAL_TASK_QUEUE=task_queue)
        connecting = rf"Connecting to Temporal at {temporal.address}"
        name = name_of(stop_signal)
        doing = "while connecting to Temporal"
        assert_each_stops(
            stop_signal,
            Waiting(run_app("worker.py", env=env), connecting, 0, rf"Worker stopped by {name} {doing}$"),
            Waiting(run_app("client.py", env=env), connecting, 0, rf"Client stopped by {name} {doing}$"),
            Waiting(
                run_app("client.py", "--count", "2", env=env),
                connecting,
                128 + stop_signal,
                rf"^Stopped by {name} {doing}: 0 of 2 results arrived; no workflow was started$",
            ),
        )


@stop_signals
def test_worker_and_client_stop_when_the_server_answers_the_connection_and_nothing_else(
    tmp_path, dev_server, task_queue, run_app, stop_signal
):
    with FirstCallOnlyProxy(dev_server.address) as proxy:
        env = base_environment(tmp_path, TEMPORAL_ADDRESS=proxy.address, TEMPORAL_TASK_QUEUE=task_queue)
        name = name_of(stop_signal)
        starting = r"Starting workflow your-workflow-1-"
        worker = run_app("worker.py", env=env)
        assert_each_stops(
            stop_signal,
            Waiting(
                worker,
                "Connected to Temporal",
                0,
                rf"Worker stopped by {name} while checking the namespace and starting to poll$",
            ),
            Waiting(run_app("client.py", env=env), starting, 0, rf"Client stopped \({name}\)$"),
            Waiting(
                run_app("client.py", "--count", "2", env=env),
                starting,
                128 + stop_signal,
                rf"^Stopped by {name} while starting workflow 1: 0 of 2 results arrived; no workflow was started$",
            ),
        )
        assert "Awaiting tasks" not in worker.output


@stop_signals
def test_client_stops_waiting_for_results_no_worker_will_produce_and_says_where_the_workflows_are(
    tmp_path, dev_server, task_queue, run_app, stop_signal
):
    env = base_environment(
        tmp_path, TEMPORAL_ADDRESS=dev_server.address, TEMPORAL_TASK_QUEUE=task_queue, CLIENT_INTERVAL_SECONDS="0.2"
    )
    name = name_of(stop_signal)
    smoke_test = run_app("client.py", "--count", "3", env=env)
    smoke_test.wait_for_line(r"started\. Run ID", count=3)
    assert_each_stops(
        stop_signal,
        Waiting(
            run_app("client.py", env=env),
            r"Workflow your-workflow-2-\S+ started",
            0,
            rf"Client stopped \({name}\); \d+ workflows had no result yet and keep running on the server",
        ),
        Waiting(
            smoke_test,
            r"started\. Run ID",
            128 + stop_signal,
            rf"^Stopped by {name} while waiting for results: 0 of 3 results arrived\. The 3 workflows without a "
            r"result keep running on the server \(they are durable\): see them in the Temporal Web UI or with: "
            r"temporal workflow list ",
        ),
    )
    pending = re.findall(r"^PENDING (\S+)$", smoke_test.output, re.MULTILINE)
    assert len(pending) == 3

    command = smoke_test.output.rsplit(" or with: ", 1)[1].splitlines()[0]
    listed = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, check=True).stdout
    for workflow_id in pending:
        assert re.search(rf"Running\s+{re.escape(workflow_id)}\s", listed), listed


@stop_signals
def test_running_worker_and_codec_server_stop_promptly(tmp_path, dev_server, task_queue, run_app, stop_signal):
    with FakeKeyVault(tmp_path) as vault:
        vault.add_version(SECRET, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        env = azure_cli_environment(
            base_environment(
                tmp_path,
                TEMPORAL_ADDRESS=dev_server.address,
                TEMPORAL_TASK_QUEUE=task_queue,
                CODEC_SERVER_PORT=str(free_port()),
            )
        ) | keyvault_environment(vault, SECRET)
        assert_each_stops(
            stop_signal,
            Waiting(run_app("worker.py", env=env), WORKER_READY, 0, r"Worker stopped$"),
            Waiting(run_app("codec_server.py", env=env), r"Codec server listening on", 0, r"Codec server stopped$"),
        )
