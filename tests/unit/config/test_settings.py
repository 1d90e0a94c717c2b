from __future__ import annotations

from pathlib import Path

import pytest

from config.exceptions import SettingsError
from config.settings import DEV_APP_SECRET, Settings, describe


def test_defaults_are_the_embedded_mode() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.warehouse_url == "http://127.0.0.1:8123/flowscope"
    assert settings.app_secret == DEV_APP_SECRET
    assert settings.dev_secrets_in_use == [
        "FLOWSCOPE_APP_SECRET", "FLOWSCOPE_VERIFY_TOKEN", "FLOWSCOPE_HASH_KEY", "FLOWSCOPE_EVENTS_TOKEN",
        "FLOWSCOPE_DASHBOARD_PASSWORD", "FLOWSCOPE_WAREHOUSE_ADMIN_PASSWORD", "FLOWSCOPE_WAREHOUSE_WRITER_PASSWORD",
        "FLOWSCOPE_WAREHOUSE_ANALYST_PASSWORD",
    ]


def test_environment_values_are_typed() -> None:
    settings = Settings.from_env({
        "FLOWSCOPE_PARTITIONS": "12",
        "FLOWSCOPE_PRODUCER_TIMEOUT_S": "2.5",
        "FLOWSCOPE_DATA_DIR": "/tmp/x",
        "FLOWSCOPE_FORM_FIELDS_ALLOWLIST": "plan, seats,,",
        "FLOWSCOPE_APP_SECRET": "real",
    })
    assert settings.partitions == 12
    assert settings.producer_timeout_s == 2.5
    assert settings.data_dir == Path("/tmp/x")
    assert settings.form_fields_allowlist == ("plan", "seats")
    assert "FLOWSCOPE_APP_SECRET" not in settings.dev_secrets_in_use


def test_malformed_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="FLOWSCOPE_PARTITIONS"):
        Settings.from_env({"FLOWSCOPE_PARTITIONS": "many"})
    with pytest.raises(SettingsError, match="FLOWSCOPE_PARTITIONS must be at least 1"):
        Settings.from_env({"FLOWSCOPE_PARTITIONS": "0"})
    with pytest.raises(SettingsError, match="FLOWSCOPE_HASH_KEY"):
        Settings.from_env({"FLOWSCOPE_HASH_KEY": ""})


def test_as_env_round_trips() -> None:
    settings = Settings.from_env({"FLOWSCOPE_PARTITIONS": "3", "FLOWSCOPE_FORM_FIELDS_ALLOWLIST": "a,b"})
    assert Settings.from_env(settings.as_env()) == settings


def test_every_setting_is_documented() -> None:
    rows = describe()
    assert all(doc for _, _, doc in rows)
    assert len({key for key, _, _ in rows}) == len(rows)


def test_readme_documents_every_setting_with_its_default() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for key, default, _ in describe():
        shown = f"`{default}`" if default else "(empty)"
        assert f"| `{key}` | {shown} |" in readme, key


def test_keys_that_duplicated_a_url_are_refused_naming_the_url_to_set() -> None:
    for key, url_key in (("FLOWSCOPE_BROKER_PORT", "FLOWSCOPE_KAFKA_BOOTSTRAP"),
                         ("FLOWSCOPE_WAREHOUSE_HOST", "FLOWSCOPE_WAREHOUSE_URL"),
                         ("FLOWSCOPE_WAREHOUSE_PORT", "FLOWSCOPE_WAREHOUSE_URL")):
        with pytest.raises(SettingsError, match=f"{key} is no longer read: .*{url_key}"):
            Settings.from_env({key: "9999"})


def test_the_embedded_broker_and_warehouse_listen_where_the_urls_point() -> None:
    settings = Settings.from_env({"FLOWSCOPE_KAFKA_BOOTSTRAP": "127.0.0.2:19092,127.0.0.3:19093",
                                  "FLOWSCOPE_WAREHOUSE_URL": "http://analyst:pw@127.0.0.4:18123/flowscope"})
    assert (settings.broker_host, settings.broker_port) == ("127.0.0.2", 19092)
    assert (settings.warehouse_host, settings.warehouse_port) == ("127.0.0.4", 18123)
    assert "FLOWSCOPE_BROKER_PORT" not in settings.as_env()
    with pytest.raises(SettingsError, match="FLOWSCOPE_KAFKA_BOOTSTRAP needs host:port"):
        Settings.from_env({"FLOWSCOPE_KAFKA_BOOTSTRAP": "kafka"})


def test_each_warehouse_role_connects_with_its_own_credentials() -> None:
    settings = Settings.from_env({"FLOWSCOPE_WAREHOUSE_URL": "https://ch.example:8443/flowscope",
                                  "FLOWSCOPE_WAREHOUSE_ANALYST_USER": "ana lyst",
                                  "FLOWSCOPE_WAREHOUSE_ANALYST_PASSWORD": "p@ss:/word"})
    assert settings.warehouse_url_for("analyst") == "https://ana%20lyst:p%40ss%3A%2Fword@ch.example:8443/flowscope"
    assert settings.warehouse_url_for("writer") == "https://flowscope_writer:dev-warehouse-writer@ch.example:8443/flowscope"
    assert settings.warehouse_user("admin") == ("flowscope_admin", "dev-warehouse-admin")
    with pytest.raises(SettingsError, match="unknown warehouse role 'default'"):
        settings.warehouse_url_for("default")


def test_no_warehouse_user_is_password_less_and_roles_are_distinct_users() -> None:
    with pytest.raises(SettingsError, match="FLOWSCOPE_WAREHOUSE_WRITER_PASSWORD must not be empty"):
        Settings.from_env({"FLOWSCOPE_WAREHOUSE_WRITER_PASSWORD": ""})
    with pytest.raises(SettingsError, match="three different users"):
        Settings.from_env({"FLOWSCOPE_WAREHOUSE_ANALYST_USER": "flowscope_admin"})


def test_a_child_sees_only_the_secrets_it_is_given() -> None:
    settings = Settings.from_env({"FLOWSCOPE_APP_SECRET": "s3cret", "FLOWSCOPE_HASH_KEY": "k3y"})
    env = settings.as_env(secrets=("hash_key",))
    assert env["FLOWSCOPE_HASH_KEY"] == "k3y"
    assert [key for key in env if key.endswith(("_SECRET", "_TOKEN", "_PASSWORD"))] == []
    assert env["FLOWSCOPE_WAREHOUSE_URL"] == settings.warehouse_url
    assert Settings.from_env(env).app_secret == DEV_APP_SECRET
    with pytest.raises(SettingsError, match="not secret settings"):
        settings.as_env(secrets=("warehouse_url",))
