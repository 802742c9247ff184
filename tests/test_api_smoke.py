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
