"""The server end to end over HTTP on the local runner: the happy path a new user takes first."""

from __future__ import annotations

from server import config_yaml, submit


def test_submit_wait_returns_output_exit_code_and_results(server_factory):
    """A wait=true submit answers with stdout, stderr, exit code and the results file text."""
    server = server_factory()
    with server.client(server.admin_token) as client:
        code = 'import sys\nprint("x")\nprint("e", file=sys.stderr)\nopen("results.jsonl", "w").write("{}\\n")\n'
        answer = submit(client, code, config_yaml("admin"), wait=True)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], body["stdout"], body["stderr"], body["exit_code"]) == ("completed", "x\n", "e\n", 0)
        assert body["results"] == "{}\n"


def test_sigusr1_writes_every_threads_stack_and_the_server_goes_on(server_factory):
    """`kill -USR1` makes a running server write each thread's stack to stderr; it keeps serving."""
    server = server_factory()
    stacks = server.stacks()
    assert "most recent call first" in stacks
    assert "ledger/store/writer.py" in stacks  # the writer thread, not only the one the signal interrupted
    assert "uvicorn" in stacks
    with server.client(server.admin_token) as client:
        assert client.get("/livez").status_code == 200
