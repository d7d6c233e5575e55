"""rollout.engine vllm_server without a server: its config section, the server's command line,
and the errors of a server that cannot be reached, does not start or never gets healthy, each
naming the URL (fast: no vLLM needed)."""

from __future__ import annotations

import json
import re
import stat
import sys

import pytest

from ireasoner.config import ConfigError, RolloutConfig, load_config
from ireasoner.engines.server_process import ServerError, cli_flags, free_port, server_python
from ireasoner.engines.vllm_server import VLLMServerEngine
from ireasoner.eval.lmms import model_spec
from ireasoner.eval.runner import ServedModel
from ireasoner.model.loading import load_processor


@pytest.fixture(scope="module")
def processor(tiny_model_path):
    return load_processor(str(tiny_model_path), 3136, 12544)


def test_the_server_section_validates_each_key():
    cfg = load_config(None, ["rollout.engine=vllm_server", "rollout.server.url=http://gpu:8000/",
                             "rollout.server.extra_args=--max-num-seqs,8"])
    assert cfg.rollout.server.url == "http://gpu:8000"
    assert cfg.rollout.server.extra_args == ["--max-num-seqs", "8"]
    with pytest.raises(ConfigError, match="rollout.server.url.*http://"):
        load_config(None, ["rollout.server.url=gpu:8000"])
    with pytest.raises(ConfigError, match="unknown key 'rollout.server.adress'.*url"):
        load_config(None, ["rollout.server.adress=x"])
    with pytest.raises(ConfigError, match="rollout.server.port"):
        load_config(None, ["rollout.server.port=70000"])
    with pytest.raises(ConfigError, match="rollout.engine"):
        load_config(None, ["rollout.engine=vllm-server"])


def test_the_server_interpreter_defaults_to_the_vllm_venv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert server_python(RolloutConfig().server) == sys.executable
    venv_python = tmp_path / ".venv-vllm" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)  # the venv's own path, not the one it links to
    assert server_python(RolloutConfig().server) == str(venv_python)
    assert server_python(RolloutConfig(server={"python": "/opt/py"}).server) == "/opt/py"


def test_engine_arguments_become_server_flags():
    flags = cli_flags({"model": "/m", "enable_lora": True, "enable_sleep_mode": False,
                       "kv_cache_memory_bytes": None, "mm_processor_kwargs": {"min_pixels": 4}})
    assert flags == ["--model", "/m", "--enable-lora", "--mm-processor-kwargs",
                     json.dumps({"min_pixels": 4})]


def test_an_unreachable_server_is_named_with_its_url(processor, tiny_model_path):
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    rollout = RolloutConfig(engine="vllm_server", server={"url": url, "request_timeout_s": 5})
    with pytest.raises(ServerError, match=f"server at {url} is unreachable during the model "
                                          "check"):
        VLLMServerEngine(str(tiny_model_path), processor, rollout)


def test_a_server_that_exits_at_start_names_its_log(processor, tiny_model_path, tmp_path):
    rollout = RolloutConfig(engine="vllm_server", server={"python": "/bin/false"})
    with pytest.raises(ServerError, match=r"exited with code 1 during start-up; its log: "
                                          rf"{tmp_path}/vllm_server.log"):
        VLLMServerEngine(str(tiny_model_path), processor, rollout, log_dir=tmp_path)


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(processor, tiny_model_path,
                                                                  tmp_path):
    hanging = tmp_path / "python"
    hanging.write_text("#!/bin/sh\necho \"$@\"\nexec sleep 600\n")
    hanging.chmod(hanging.stat().st_mode | stat.S_IEXEC)
    rollout = RolloutConfig(engine="vllm_server", server={"python": str(hanging),
                                                          "startup_timeout_s": 1, "port": 0})
    with pytest.raises(ServerError, match=r"http://127\.0\.0\.1:\d+ was not healthy after 1 s"):
        VLLMServerEngine(str(tiny_model_path), processor, rollout, log_dir=tmp_path)
    logged = (tmp_path / "vllm_server.log").read_text()
    assert "-m vllm.entrypoints.openai.api_server --model" in logged
    assert "--enable-lora" in logged and "--host 127.0.0.1" in logged


def test_evaluation_through_a_served_model_uses_lmms_eval_openai_class():
    served = ServedModel("http://127.0.0.1:8000", "solver-v7", timeout_s=60)
    name, args = model_spec("openai", served.name, "cpu", 32, None,
                            {**served.model_args(), "num_concurrent": "4"})
    assert name == "openai"
    assert args == ("model=solver-v7,api_key=EMPTY,base_url=http://127.0.0.1:8000/v1,"
                    "timeout=60,num_concurrent=4")


def test_vllm_serve_cli_reports_a_server_that_cannot_start(tmp_path, capsys, tiny_model_path):
    from flows.cli import main

    code = main(["vllm-serve", "--config", "configs/smoke.yaml", "--set",
                 "rollout.server.python=/bin/false", "--log-dir", str(tmp_path)])
    assert code == 2
    assert re.search(r"ireasoner: error: the vLLM server at http://127\.0\.0\.1:\d+ \(pid \d+\) "
                     r"exited with code 1 during start-up", capsys.readouterr().err)
