"""Settings: defaults, then TOML, then GPULEDGER_* environment; a bad value names the setting."""

from __future__ import annotations

import pytest

from ledger.errors import SettingsError
from ledger.settings import load_settings


def test_defaults_match_the_original_system(tmp_path, monkeypatch):
    """With nothing configured, the original system's defaults apply (port 8001, 5/min, 1 active job)."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert (settings.server_port, settings.rate_limit_per_minute, settings.max_active_jobs_per_user) == (8001, 5, 1)
    assert settings.node_specs() == []


def test_toml_then_environment_override(tmp_path):
    """A TOML file sets values and [[nodes]]; the environment wins over the file."""
    config = tmp_path / "g.toml"
    config.write_text('server_port = 9000\njump_host = "bastion"\n[[nodes]]\nname = "n0"\nhost = "10.0.0.1"\n')
    environ = {"GPULEDGER_SERVER_PORT": "9100", "GPULEDGER_LXC_RESTART_BETWEEN_JOBS": "true"}
    settings = load_settings(config, environ=environ)
    assert settings.server_port == 9100
    assert settings.jump_host == "bastion"
    assert settings.lxc_restart_between_jobs is True
    assert [n.name for n in settings.node_specs()] == ["n0"]


def test_prefix_nodes_like_the_original(tmp_path):
    """GPU_NODE_PREFIX + GPU_NODE_COUNT give gpu-node-0 … gpu-node-7."""
    settings = load_settings(environ={"GPULEDGER_GPU_NODE_COUNT": "8"})
    assert [n.name for n in settings.node_specs()] == [f"gpu-node-{i}" for i in range(8)]


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GPULEDGER_SERVER_PORT": "eighty"}, "GPULEDGER_SERVER_PORT"),
        ({"GPULEDGER_SERVER_PORT": "-1"}, "server_port"),
        ({"GPULEDGER_MAX_ACTIVE_JOBS_PER_USER": "-1"}, "max_active_jobs_per_user"),
        ({"GPULEDGER_NO_SUCH_THING": "1"}, "GPULEDGER_NO_SUCH_THING"),
        ({"GPULEDGER_QUOTA_SUBMISSIONS": "-1"}, "quota_submissions"),
        ({"GPULEDGER_QUOTA_GPU_HOURS": "-0.5"}, "quota_gpu_hours"),
        ({"GPULEDGER_RETRIES": "6"}, "retries"),
        ({"GPULEDGER_RETRY_ON": '["exit_nonzero"]'}, "retry_on"),
    ],
)
def test_bad_values_name_the_setting(env, name):
    """A malformed or unknown setting stops start-up with the setting's name in the message."""
    with pytest.raises(SettingsError, match=name):
        load_settings(environ=env)


def test_client_and_test_variables_are_not_settings():
    """GPULEDGER_URL/TOKEN/USER (the client's) and GPULEDGER_REQUIRE_SSHD (CI's) do not stop the server."""
    environ = {
        "GPULEDGER_URL": "http://x",
        "GPULEDGER_TOKEN": "t",
        "GPULEDGER_USER": "u",
        "GPULEDGER_REQUIRE_SSHD": "1",
    }
    assert load_settings(environ=environ).server_port == 8001


def test_secret_only_from_environment(tmp_path):
    """The LLM key is read from the environment and refused in a TOML file; config show redacts it."""
    config = tmp_path / "g.toml"
    config.write_text('openrouter_api_key = "sk-in-a-file"\n')
    with pytest.raises(SettingsError, match="openrouter_api_key"):
        load_settings(config, environ={})
    settings = load_settings(environ={"OPENROUTER_API_KEY": "sk-env"})
    assert settings.openrouter_api_key == "sk-env"
    assert settings.redacted()["openrouter_api_key"] == "***"


def test_slurm_table_from_toml_and_its_checks(tmp_path):
    """A [slurm] table is read typed; via = "ssh" without login_host stops the start naming it."""
    config = tmp_path / "gpuledger.toml"
    config.write_text('[slurm]\npartition = "gpu"\nsbatch_options = ["--account=ml"]\n')
    slurm = load_settings(config, environ={}).slurm
    assert slurm is not None
    assert (slurm.via, slurm.partition, slurm.sbatch_options) == ("local", "gpu", ["--account=ml"])
    config.write_text('[slurm]\nvia = "ssh"\n')
    with pytest.raises(SettingsError, match="login_host"):
        load_settings(config, environ={})
