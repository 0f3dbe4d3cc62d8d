"""Start-up errors an operator can cause: a line or two that names the fix, never a traceback."""

from __future__ import annotations

import socket

from tests.servers import write_config
from tests.test_cli import threadline

SCRIPTED = {"models": [{"id": "scripted", "provider": "scripted"}]}


def serve(*args: str, tmp_path):
    result = threadline("serve", "--database", f"sqlite:///{tmp_path}/a.db", *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    return result


def test_a_misspelled_key_names_the_file_the_table_and_the_nearest_key(tmp_path):
    config = tmp_path / "threadline.toml"
    config.write_text('defualt_model = "scripted"\n\n[server]\nshutdown_grace = 3\n')
    result = serve("--config", str(config), tmp_path=tmp_path)
    assert sorted(result.stderr.splitlines()) == [
        f"{config}: unknown key 'defualt_model' at the top level; did you mean 'default_model'?",
        f"{config}: unknown key 'shutdown_grace' in [server]; did you mean 'shutdown_grace_s'?",
    ]
    assert not (tmp_path / "a.db").exists()  # refused before anything started


def test_a_key_in_the_wrong_table_is_pointed_to_its_table(tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"max_turns": 3})
    assert serve("--config", str(config), tmp_path=tmp_path).stderr.strip() == f"{config}: unknown key 'max_turns' at the top level; it belongs in [tools]."


def test_an_unknown_key_in_a_list_of_tables_says_which_entry(tmp_path):
    models = [{"id": "a", "provider": "scripted"}, {"id": "b", "provider": "llama-cpp", "model_pth": "x.gguf"}]
    config = write_config(tmp_path / "threadline.toml", {"models": models})
    result = serve("--config", str(config), tmp_path=tmp_path)
    assert result.stderr.strip() == f"{config}: unknown key 'model_pth' in [[models]] (the second); did you mean 'model_path'?"


def test_an_unknown_key_with_no_near_one_lists_the_valid_keys(tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"limits": {"colour": "blue"}})
    result = serve("--config", str(config), tmp_path=tmp_path)
    assert result.stderr.strip() == f"{config}: unknown key 'colour' in [limits]; the keys there are: max_body_bytes, max_input_items."


def test_a_wrong_value_names_the_file_the_table_and_the_key(tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"server": {"keep_alive_s": -1}})
    result = serve("--config", str(config), tmp_path=tmp_path)
    assert result.stderr.strip() == f"{config}: keep_alive_s in [server]: Input should be greater than 0."


def test_a_port_in_use_is_refused_before_the_start(tmp_path):
    config = write_config(tmp_path / "threadline.toml", SCRIPTED)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = serve("--config", str(config), "--port", str(port), tmp_path=tmp_path)
    assert result.stderr.strip() == f"Cannot listen on 127.0.0.1:{port}: another process is using that port. Stop it, or choose another --port."
    assert not (tmp_path / "a.db").exists()


def test_a_bad_database_url_is_one_line(tmp_path):
    config = write_config(tmp_path / "threadline.toml", SCRIPTED)
    result = threadline("serve", "--config", str(config), "--database", "postgres:/nowhere")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "Invalid database URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE, without a driver name."


def test_an_unreachable_database_is_one_line(tmp_path):
    config = write_config(tmp_path / "threadline.toml", SCRIPTED)
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = threadline("serve", "--config", str(config), "--port", "0", "--database", f"postgresql://threadline:secret-pw@127.0.0.1:{port}/threadline")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    line = f"Cannot open the database postgresql://threadline:***@127.0.0.1:{port}/threadline ([Errno 111] Connection refused): check --database, and that its server runs and the database exists."
    assert line in result.stderr.splitlines()[-2]
    assert "secret-pw" not in result.stderr


def test_a_missing_model_file_is_one_line(tmp_path):
    models = [{"id": "local", "provider": "llama-cpp", "model_path": str(tmp_path / "missing.gguf")}]
    config = write_config(tmp_path / "threadline.toml", {"models": models})
    result = serve("--config", str(config), "--port", "0", tmp_path=tmp_path)
    line = f"The model 'local' cannot be loaded. The model file {tmp_path / 'missing.gguf'} does not exist: set model_path to a GGUF file."
    assert line in result.stderr.splitlines()[-2]
