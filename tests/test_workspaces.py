"""The workspaces file: what it accepts, and the message for each thing it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from iozen_etl.workspaces import (
    ENVIRONMENT_WORKSPACE,
    Workspace,
    WorkspacesFileError,
    load_workspaces,
)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "workspaces.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_there_is_one_workspace_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IOZEN_WORKSPACES_FILE", raising=False)
    assert load_workspaces() == [ENVIRONMENT_WORKSPACE]
    assert ENVIRONMENT_WORKSPACE.api_key_env == "IOZEN_API_KEY"
    assert not ENVIRONMENT_WORKSPACE.from_file


def test_a_file_names_each_workspace_in_its_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(
        tmp_path,
        """
[workspaces.globex]
api_key_env = "IOZEN_API_KEY_GLOBEX"
base_url = "http://127.0.0.1:9/api/v1"
in_progress_refresh_limit = 5

[workspaces.acme]
api_key_env = "IOZEN_API_KEY_ACME"
""",
    )
    monkeypatch.setenv("IOZEN_WORKSPACES_FILE", str(path))
    assert load_workspaces() == [
        Workspace("globex", "IOZEN_API_KEY_GLOBEX", "http://127.0.0.1:9/api/v1", 5),
        Workspace("acme", "IOZEN_API_KEY_ACME"),
    ]
    assert all(workspace.from_file for workspace in load_workspaces())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[workspaces.acme\n", "not valid TOML"),
        ("", "no [workspaces.<name>] table"),
        ('[other]\nx = 1\n[workspaces.a]\napi_key_env = "K"\n', "unknown table(s) other"),
        ('[workspaces.Acme]\napi_key_env = "K"\n', "[workspaces.Acme]: a name is"),
        ('[workspaces.main]\napi_key_env = "K"\n', "[workspaces.main]: a name is"),
        ('[workspaces.default]\napi_key_env = "K"\n', "[workspaces.default]: a name is"),
        ('[workspaces.iozen]\napi_key_env = "K"\n', "[workspaces.iozen]: a name is"),
        ('[workspaces.acme_bots]\napi_key_env = "K"\n', "[workspaces.acme_bots]: a name is"),
        ("[workspaces.acme]\n", "api_key_env must name the environment variable"),
        ('[workspaces.acme]\napi_key_env = "sk live 123"\n', "the key itself never goes"),
        ('[workspaces.acme]\napi_key = "K"\napi_key_env = "K"\n', "unknown field(s) api_key"),
        ('[workspaces.acme]\napi_key_env = "K"\nbase_url = "ftp://x"\n', "base_url must be"),
        (
            '[workspaces.acme]\napi_key_env = "K"\nin_progress_refresh_limit = -1\n',
            "in_progress_refresh_limit must be",
        ),
        ("workspaces = 3\n", "no [workspaces.<name>] table"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(WorkspacesFileError) as caught:
        load_workspaces(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_a_key_written_into_the_file_is_not_echoed(tmp_path: Path) -> None:
    secret = "iozen_live_0123456789abcdef"
    path = _file(tmp_path, f'[workspaces.acme]\napi_key_env = "{secret} "\n')
    with pytest.raises(WorkspacesFileError) as caught:
        load_workspaces(path)
    assert secret not in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkspacesFileError, match="cannot be read"):
        load_workspaces(tmp_path / "absent.toml")
