"""Settings: defaults, then TOML, then GPULEDGER_* environment; a bad value names the setting."""

from __future__ import annotations

import msgspec
import pytest

from cli.config_toml import settings_toml
from ledger.domain.errors import SettingsError
from ledger.store.settings import FLAT, TABLES, Settings, load_settings, setting_sources


def test_defaults_match_the_original_system(tmp_path, monkeypatch):
    """With nothing configured, the original system's defaults apply (port 8001, 5/min, 1 active job)."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert (settings.http.port, settings.queue.rate_limit_per_minute, settings.queue.max_active_jobs_per_user) == (
        8001,
        5,
        1,
    )
    assert settings.ssh.node_specs() == []


def test_toml_then_environment_override(tmp_path):
    """A TOML file sets values and [[nodes]]; the environment wins over the file."""
    config = tmp_path / "g.toml"
    config.write_text('server_port = 9000\njump_host = "bastion"\n[[nodes]]\nname = "n0"\nhost = "10.0.0.1"\n')
    environ = {"GPULEDGER_SERVER_PORT": "9100", "GPULEDGER_LXC_RESTART_BETWEEN_JOBS": "true"}
    settings = load_settings(config, environ=environ)
    assert settings.http.port == 9100
    assert settings.ssh.jump_host == "bastion"
    assert settings.lxc.restart_between_jobs is True
    assert [n.name for n in settings.ssh.node_specs()] == ["n0"]


def test_prefix_nodes_like_the_original(tmp_path):
    """GPU_NODE_PREFIX + GPU_NODE_COUNT give gpu-node-0 … gpu-node-7."""
    settings = load_settings(environ={"GPULEDGER_GPU_NODE_COUNT": "8"})
    assert [n.name for n in settings.ssh.node_specs()] == [f"gpu-node-{i}" for i in range(8)]


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
    assert load_settings(environ=environ).http.port == 8001


def test_secret_only_from_environment(tmp_path):
    """The LLM key is read from the environment and refused in a TOML file; config show redacts it."""
    config = tmp_path / "g.toml"
    config.write_text('openrouter_api_key = "sk-in-a-file"\n')
    with pytest.raises(SettingsError, match="openrouter_api_key"):
        load_settings(config, environ={})
    settings = load_settings(environ={"OPENROUTER_API_KEY": "sk-env"})
    assert settings.scanner.openrouter_api_key == "sk-env"
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


@pytest.mark.parametrize(
    ("env", "told"),
    [
        ({"GPULEDGER_SERVER_PORT": "0"}, "server_port (GPULEDGER_SERVER_PORT): Expected `int` >= 1"),
        ({"GPULEDGER_JOB_CPU_WEIGHT": "10001"}, "job_cpu_weight (GPULEDGER_JOB_CPU_WEIGHT): Expected `int` <= 10000"),
        ({"GPULEDGER_JOB_MEMORY_SHARE": "1.5"}, "job_memory_share (GPULEDGER_JOB_MEMORY_SHARE): Expected `float` <= 1"),
        ({"GPULEDGER_JOB_UID_BASE": "0"}, "job_uid_base (GPULEDGER_JOB_UID_BASE): Expected `int` >= 1000"),
        ({"GPULEDGER_JOB_CGROUP_PARENT": '"a/../b"'}, "no . or .."),
        ({"GPULEDGER_JOB_READONLY_PATHS": '["rel"]'}, "job_readonly_paths (GPULEDGER_JOB_READONLY_PATHS)"),
        ({"GPULEDGER_DOWNLOAD_CONCURRENCY": "0"}, "download_concurrency (GPULEDGER_DOWNLOAD_CONCURRENCY)"),
        ({"GPULEDGER_ENDPOINT_LIMITS": '{"submit": -1}'}, "endpoint_limits (GPULEDGER_ENDPOINT_LIMITS)"),
        (
            {"GPULEDGER_REPLICA": '{"url": "file:///r", "lag_s": 0}'},
            "replica (GPULEDGER_REPLICA): Expected `float` > 0",
        ),
    ],
)
def test_a_broken_constraint_names_the_flat_setting_and_its_variable(env, told):
    """A value outside its msgspec.Meta bounds is refused with the flat name, the variable and the bound."""
    with pytest.raises(SettingsError) as refused:
        load_settings(environ=env)
    assert told in str(refused.value)


def test_the_flat_table_covers_every_grouped_field_once():
    """Each field of each group has exactly one flat name, and each flat name points at a real field."""
    fields = {
        f"{group.name}.{field.name}"
        for group in msgspec.structs.fields(Settings)
        if group.name not in TABLES
        for field in msgspec.structs.fields(group.type)
    }
    assert sorted(FLAT.values()) == sorted(fields)


def test_groups_are_read_by_their_own_names(tmp_path):
    """A flat TOML key and a flat variable land in their reader's group; the rest keep their defaults."""
    config = tmp_path / "g.toml"
    config.write_text('ssh_key_file = "/k"\njob_cpu_quota = 2.5\nfairshare_half_life = "36h"\n')
    settings = load_settings(config, environ={"GPULEDGER_CODE_SCANNER_MODEL": "m", "GPULEDGER_RETRIES": "2"})
    assert (settings.ssh.key_file, settings.sandbox.cpu_quota) == ("/k", 2.5)
    assert (settings.fairshare.half_life_s, settings.scanner.model, settings.queue.retries) == (36 * 3600.0, "m", 2)
    assert settings.http == Settings().http


def test_an_unknown_key_in_the_file_is_named(tmp_path):
    """A typo in gpuledger.toml stops the start naming the key (it is not silently ignored)."""
    config = tmp_path / "g.toml"
    config.write_text("jump_hots = 'bastion'\n")
    with pytest.raises(SettingsError, match="jump_hots"):
        load_settings(config, environ={})


def test_config_show_toml_pastes_back_to_the_same_settings(tmp_path):
    """The flat TOML that config show writes loads back into equal grouped settings."""
    config = tmp_path / "g.toml"
    config.write_text(
        'server_port = 9001\njob_env = {A = "1"}\n[[nodes]]\nname = "n0"\nhost = "h"\n[slurm]\npartition = "p"\n'
    )
    settings = load_settings(config, environ={"GPULEDGER_QUOTA_GPU_HOURS": "1.5"})
    again = tmp_path / "again.toml"
    again.write_text(settings_toml(settings, setting_sources(config, environ={})))
    assert load_settings(again, environ={}) == settings
