"""The deployment files users copy (example/deploy/): valid, and naming only what is real.

The compose file validates against the Compose specification; every command a container runs
exists and accepts its arguments; a real server, started with the image's own command and
the files' settings, answers each probe with 200; every variable the files set is one the
example reads; the Grafana dashboard charts exactly the series that server exports, and the
metrics guide lists them all.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import get_commands, load_command_class

from gql_pubsub.server.close_codes import CloseCode

from ..gqlws import GraphQLWS
from ..services import ROOT, LiveServer, RedisServer, _running, free_port, scaled, wait_until

yaml = pytest.importorskip(
    "yaml", reason="PyYAML comes with the dev extra (mkdocs): python3 scripts/dev.py test"
)

DEPLOY = ROOT / "example" / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes.yaml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
METRICS_GUIDE = ROOT / "docs" / "guides" / "metrics.md"

IMAGE = "gql-pubsub-example"
"""The image the compose file builds (and its services run)."""

KNOWN_KINDS = {
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("batch/v1", "Job"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"),
}
"""The API versions and kinds of a current Kubernetes (1.25+) that these files may use."""

READ_ELSEWHERE = {"PROMETHEUS_MULTIPROC_DIR": ROOT / "gql_pubsub" / "core" / "metrics.py"}
"""Variables the files may set that the library reads itself (not example/settings.py)."""

TARGET_LABELS = {"job", "instance"}
"""The labels Prometheus gives every series of a scrape target."""


# The files, read as their tools read them.


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined and comment lines dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def image_command() -> list[str]:
    """The image's CMD (exec form)."""
    commands = [json.loads(args) for keyword, args in dockerfile_instructions() if keyword == "CMD"]
    assert len(commands) == 1, commands
    command: list[str] = commands[0]
    return command


def image_env() -> dict[str, str]:
    """The variables the image's ENV instructions set (``KEY=value`` form)."""
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, equals, value = pair.partition("=")
                assert equals, f"ENV {args}: write KEY=value"
                env[name] = value
    return env


def gunicorn_args(command: list[str]) -> Any:
    """``command``'s arguments as gunicorn's own parser reads them (an unknown flag fails)."""
    from gunicorn.config import Config

    assert command[0] == "gunicorn", command
    return Config(prog="gunicorn").parser().parse_args(command[1:])


def bind_port(command: list[str]) -> int:
    (bind,) = gunicorn_args(command).bind
    return int(bind.rpartition(":")[2])


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def image_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the example's image."""
    services = compose()["services"]
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def compose_default(value: str) -> str:
    """The value of ``${NAME:-default}`` when NAME is not set."""
    match = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    assert match, value
    return match.group(1)


def seconds(duration: str) -> float:
    """A compose duration (``30s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def kubernetes() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc is not None]


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in kubernetes() if doc["kind"] == kind]


def deployment() -> dict[str, Any]:
    (found,) = objects("Deployment")
    return found


def pod_specs() -> list[dict[str, Any]]:
    """The pod templates of the Deployment and the Jobs."""
    return [doc["spec"]["template"]["spec"] for doc in objects("Deployment") + objects("Job")]


def web_container() -> dict[str, Any]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return container


def config_map(name: str) -> dict[str, str]:
    found = [doc for doc in objects("ConfigMap") if doc["metadata"]["name"] == name]
    assert found, f"no ConfigMap {name!r} in {KUBERNETES.name}"
    data: dict[str, str] = found[0]["data"]
    return data


def probes() -> dict[str, dict[str, Any]]:
    container = web_container()
    return {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in container}  # fmt: skip


def grace_timeout() -> int:
    timeout: int = gunicorn_args(image_command()).graceful_timeout
    assert timeout is not None, "the image's command sets no --graceful-timeout"
    return timeout


def settings_reads() -> set[str]:
    """The environment variables example/settings.py reads (os.environ.get/[...], getenv)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "example" / "settings.py").read_text())):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            called = ast.unparse(node.func)
            if called in ("os.environ.get", "os.getenv"):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def python_reads() -> str:
    """What Python says of the variables it reads itself."""
    return subprocess.run(
        [sys.executable, "--help-env"], capture_output=True, text=True, check=True
    ).stdout


# Compose.


def test_the_compose_file_is_valid_under_the_compose_specification(tmp_path: Path) -> None:
    """check-jsonschema's vendored copy of the Compose specification's schema; the same check
    refuses the file with one key misspelt, so it is not vacuous."""
    pytest.importorskip(
        "check_jsonschema", reason="check-jsonschema comes with the dev extra: scripts/dev.py test"
    )
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run(
        [*check, str(COMPOSE)], capture_output=True, text=True, timeout=scaled(60)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / COMPOSE.name
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:", "    healtcheck:", 1))
    assert "healtcheck" in broken.read_text()
    refused = subprocess.run(
        [*check, str(broken)], capture_output=True, text=True, timeout=scaled(60)
    )
    assert refused.returncode != 0, refused.stdout


def docker_compose_missing() -> str | None:
    """Why ``docker compose`` cannot be run here (None: it can)."""
    docker = shutil.which("docker")
    if docker is None:
        return "docker is not installed"
    found = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=scaled(60)
    )
    if found.returncode != 0:
        said = (found.stderr or found.stdout).strip().splitlines()
        return f"docker has no compose plugin ({said[0] if said else found.returncode})"
    return None


def test_docker_compose_reads_the_compose_file() -> None:
    """``docker compose config -q``, with the variables the file requires set."""
    missing = docker_compose_missing()
    if missing is not None:
        pytest.skip(f"{missing}: `docker compose config` not run (the schema check ran)")
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    env = {**os.environ, **{name: "test-value" for name in required}}
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--profile", "relay", "config", "-q"],
        capture_output=True, text=True, env=env, timeout=scaled(60),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_redis_keeps_its_data_in_an_append_only_file_on_a_volume() -> None:
    """The command, run by a real redis-server: the append-only file is on, synced at every
    write; /data (where it lives in the image) is a named volume."""
    redis_service = compose()["services"]["redis"]
    command = redis_service["command"]
    assert command[0] == "redis-server"
    assert any(v.split(":")[0] in compose()["volumes"] and v.endswith(":/data")
               for v in redis_service["volumes"])  # fmt: skip
    server = RedisServer(persistent=False, args=command[1:])  # its options come last: they win
    with server:
        client = server.client()
        try:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("appendfsync") == {"appendfsync": "always"}
        finally:
            client.close()


def test_the_web_service_waits_for_migrations_and_a_healthy_redis() -> None:
    """It starts once `migrate` has completed and Redis answers, and publishes the port the
    image's command binds."""
    services = compose()["services"]
    web = services["web"]
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert web["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["command"][2] == "migrate"
    assert f"{bind_port(image_command())}" == web["ports"][0].rpartition(":")[2]


def test_the_compose_stop_grace_period_outlasts_gunicorns_graceful_timeout() -> None:
    """Docker kills the container after stop_grace_period: the workers get their whole
    --graceful-timeout first."""
    web = image_services()["web"]
    assert seconds(web["stop_grace_period"]) > grace_timeout()


# The commands the containers run.


def management_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every ``manage.py`` command a compose service or pod runs."""
    found = [(f"compose service {name}", s["command"]) for name, s in image_services().items()
             if "command" in s]  # fmt: skip
    for spec in pod_specs():
        for container in spec.get("initContainers", []) + spec["containers"]:
            if "command" in container:
                found.append((f"container {container['name']}", container["command"]))
    return found


def test_every_management_command_the_containers_run_exists_and_accepts_its_arguments() -> None:
    """``python example/manage.py <command> …``: manage.py is where the image's WORKDIR puts
    it, the command is one Django knows, and its own parser accepts the arguments."""
    commands = management_commands()
    assert {argv[2] for _, argv in commands} >= {"migrate", "gql_pubsub_relay"}
    instructions = dockerfile_instructions()
    workdir = [args for keyword, args in instructions if keyword == "WORKDIR"][-1]
    copied = {tuple(args.split()) for keyword, args in instructions if keyword == "COPY"}
    known = get_commands()
    for where, argv in commands:
        python, manage, name, *rest = argv
        assert python == "python", where
        assert (ROOT / manage).is_file(), f"{where}: no {manage}"
        top = manage.split("/")[0]
        assert (top, f"./{top}") in copied, f"{where}: the image copies no {top} into {workdir}"
        assert name in known, f"{where}: no management command {name!r}"
        parser = load_command_class(known[name], name).create_parser("manage.py", name)
        parser.parse_args(rest)  # CommandError on an unknown option


def test_the_image_runs_gunicorn_with_uvicorn_workers_on_the_example_asgi_application() -> None:
    """The documented production server: every flag is gunicorn's, the worker class is
    uvicorn-worker's, the application is the example's."""
    args = gunicorn_args(image_command())
    assert args.worker_class == "uvicorn_worker.UvicornWorker"
    # In a process of its own: a process that imported gunicorn's workers counts as one.
    module, _, cls = args.worker_class.rpartition(".")
    is_worker = f"from gunicorn.workers.base import Worker; from {module} import {cls}; "
    is_worker += f"assert issubclass({cls}, Worker)"
    done = subprocess.run([sys.executable, "-c", is_worker], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert args.args == ["example.asgi:application"]
    module, _, name = args.args[0].partition(":")
    tree = ast.parse((ROOT / Path(*module.split("."))).with_suffix(".py").read_text())
    assigned = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}  # fmt: skip
    assert name in assigned  # and the server below runs it
    assert args.workers >= 2
    assert gunicorn_args(image_command()).bind[0].startswith("0.0.0.0:")


def test_every_file_the_image_copies_is_in_the_repository() -> None:
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            *sources, _destination = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER: the server would run as root"
    assert users[-1] not in ("root", "0")
    # Numeric: Kubernetes' runAsNonRoot can only verify a numeric user.
    assert users[-1].isdigit()


# Kubernetes.


def test_the_kubernetes_file_holds_only_known_api_versions_and_kinds() -> None:
    docs = kubernetes()
    assert docs
    for doc in docs:
        assert (doc["apiVersion"], doc["kind"]) in KNOWN_KINDS, (doc["apiVersion"], doc["kind"])
        assert doc["metadata"]["name"]
    assert {doc["kind"] for doc in docs} >= {"ConfigMap", "Deployment", "Service", "Job"}


def test_the_service_and_the_disruption_budget_select_the_deployments_pods() -> None:
    spec = deployment()["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (service,) = objects("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {p["name"] for p in web_container()["ports"]}
    assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])
    for budget in objects("PodDisruptionBudget"):
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_probes_ask_the_servers_port_with_a_host_django_allows() -> None:
    """The container's port is the one the image's command binds; each probe asks it (by name
    or number) with a Host header that is one of the ConfigMap's ALLOWED_HOSTS."""
    container = web_container()
    (port,) = container["ports"]
    assert port["containerPort"] == bind_port(image_command())
    allowed = allowed_hosts(container)
    assert probes().keys() >= {"readinessProbe", "livenessProbe"}
    for kind, probe in probes().items():
        get = probe["httpGet"]
        assert get["port"] in (port["name"], port["containerPort"]), kind
        assert get["path"].startswith("/"), kind
        assert probe_host(probe) in allowed, kind


def allowed_hosts(container: dict[str, Any]) -> list[str]:
    for source in container.get("envFrom", []):
        data = config_map(source["configMapRef"]["name"])
        if "ALLOWED_HOSTS" in data:
            return data["ALLOWED_HOSTS"].split(",")
    raise AssertionError("no ALLOWED_HOSTS in the container's ConfigMap")


def probe_host(probe: dict[str, Any]) -> str:
    headers = {h["name"].lower(): h["value"] for h in probe["httpGet"].get("httpHeaders", [])}
    assert "host" in headers, "no Host header: the kubelet would send the pod's IP, a 400"
    return headers["host"]


def test_the_pods_grace_period_outlasts_the_prestop_pause_and_the_servers_drain() -> None:
    """terminationGracePeriodSeconds > preStop sleep + gunicorn's --graceful-timeout: the
    kubelet never kills a server that is still shutting down."""
    spec = deployment()["spec"]["template"]["spec"]
    pause = 0
    pre_stop = web_container().get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        assert pre_stop["exec"]["command"][0] == "sleep"
        pause = int(pre_stop["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > pause + grace_timeout()


def test_every_config_map_and_secret_the_pods_read_is_the_one_the_file_makes() -> None:
    """ConfigMaps are defined in the file; the Secret is the one its header's `kubectl create
    secret` makes, with exactly the keys the pods read."""
    header = KUBERNETES.read_text().split("\napiVersion:", 1)[0]
    (secret_name,) = re.findall(r"kubectl create secret generic ([\w-]+)", header)
    created = set(re.findall(r"--from-literal=(\w+)=", header))
    read: set[str] = set()
    for spec in pod_specs():
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                config_map(source["configMapRef"]["name"])
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == secret_name, variable
                    read.add(ref["key"])
    assert read == created


# The variables.


def set_variables() -> dict[str, set[str]]:
    """Every variable each file sets for the example's processes."""
    found: dict[str, set[str]] = {"Dockerfile": set(image_env())}
    found["docker-compose.yml"] = {
        name for service in image_services().values() for name in service.get("environment", {})
    }
    names: set[str] = set()
    for spec in pod_specs():
        for container in spec["containers"]:
            names.update(variable["name"] for variable in container.get("env", []))
            for source in container.get("envFrom", []):
                names.update(config_map(source["configMapRef"]["name"]))
    found["kubernetes.yaml"] = names
    return found


def test_every_variable_the_files_set_is_one_the_example_or_the_library_reads() -> None:
    """example/settings.py reads it; or the library does (its module names it); or Python
    itself does (``python --help-env`` lists it). A misspelt one would be silently ignored."""
    settings = settings_reads()
    assert {"DEBUG", "DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"} <= settings
    python = python_reads()
    for where, names in set_variables().items():
        for name in names:
            if name in settings:
                continue
            if name in READ_ELSEWHERE:
                assert name in READ_ELSEWHERE[name].read_text(), (where, name)
                continue
            assert re.search(rf"^{name}\b", python, re.M), f"{where} sets {name}: nobody reads it"


def test_the_deployments_set_the_production_settings() -> None:
    """DEBUG off, the secrets, the database and Redis, wherever the server runs."""
    wanted = {"DEBUG", "DJANGO_SECRET_KEY", "JWT_SECRET", "ALLOWED_HOSTS", "DATABASE_URL",
              "REDIS_URL"}  # fmt: skip
    variables = set_variables()
    assert wanted <= variables["docker-compose.yml"]
    assert wanted <= variables["kubernetes.yaml"]
    assert image_services()["web"]["environment"]["DEBUG"] == "0"
    assert config_map("gql-pubsub-example")["DEBUG"] == "0"


# A real server, run as the image runs it.


@dataclasses.dataclass
class Deployed:
    server: LiveServer
    metrics_path: str
    metrics_token: str


@pytest.fixture(scope="module")
def deployed(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """The image's CMD, with its own flags but bound to 127.0.0.1 on a free port, in the
    repository's root (the image's WORKDIR holds the same example/), with the ConfigMap's
    settings (and compose's hosts), fresh secrets, the suite's database and Redis, and a
    metrics directory of its own."""
    command = image_command()
    port = free_port()
    argv = list(command[1:])
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"  # the image's: 0.0.0.0:8000
    settings = dict(config_map("gql-pubsub-example"))
    compose_hosts = compose_default(image_services()["web"]["environment"]["ALLOWED_HOSTS"])
    settings["ALLOWED_HOSTS"] = f"{settings['ALLOWED_HOSTS']},{compose_hosts}"
    runtime = tmp_path_factory.mktemp("gunicorn-runtime")  # gunicorn's control socket
    env = {
        **settings,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SECRET": secrets.token_urlsafe(40),
        "METRICS_TOKEN": secrets.token_urlsafe(20),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("prometheus")),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    log = log_dir / f"deployed-{port}.log"
    with _running([sys.executable, "-m", "gunicorn", *argv], env, port=port, log=log) as server:
        yield Deployed(server, settings["METRICS_PATH"], env["METRICS_TOKEN"])


def get(deployed: Deployed, path: str, **headers: str) -> httpx.Response:
    """GET, waiting (bounded) for a worker that is still starting."""
    with httpx.Client(base_url=deployed.server.http_url, timeout=scaled(30)) as client:
        return client.get(path, headers=headers)


def test_a_real_server_answers_each_kubernetes_probe_with_200(deployed: Deployed) -> None:
    for kind, probe in probes().items():
        response = get(deployed, probe["httpGet"]["path"], Host=probe_host(probe))
        assert response.status_code == 200, (kind, response.status_code, response.text[:300])


def test_a_real_server_passes_the_compose_healthcheck(deployed: Deployed) -> None:
    """The healthcheck's own command, run here against the server's port."""
    test = image_services()["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3]
    port = bind_port(image_command())
    assert f"//localhost:{port}/" in code
    allowed = compose_default(image_services()["web"]["environment"]["ALLOWED_HOSTS"])
    assert "localhost" in allowed.split(",")
    local = code.replace(f"//localhost:{port}/", f"//localhost:{deployed.server.port}/")
    result = subprocess.run(
        [sys.executable, "-c", local], capture_output=True, text=True, timeout=scaled(60)
    )
    assert result.returncode == 0, result.stderr


# The dashboard and the metrics guide, against what the server exports.


def exported(deployed: Deployed) -> dict[str, set[str]]:
    """Each series the server exports now, with its labels (one scrape, as Prometheus's)."""
    response = get(
        deployed, deployed.metrics_path, Authorization=f"Bearer {deployed.metrics_token}"
    )
    assert response.status_code == 200, response.text
    series: dict[str, set[str]] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, labels = line.rpartition(" ")[0].partition("{")
            series.setdefault(name, set()).update(re.findall(r"(\w+)=\"", labels))
    return series


async def refused_socket(url: str) -> None:
    socket = await GraphQLWS.connect(url)
    await socket.send({"type": "connection_init", "payload": {"token": "not a token"}})
    assert (await socket.expect_close()).code == CloseCode.FORBIDDEN


@pytest.fixture(scope="module")
def series(deployed: Deployed) -> dict[str, set[str]]:
    """What the server exports once it has refused a socket (a labelled counter has no series
    before its first count)."""
    asyncio.run(refused_socket(deployed.server.ws_url))
    found: dict[str, set[str]] = {}

    def counted() -> bool:
        found.update(exported(deployed))
        return "gql_pubsub_sockets_closed_total" in found

    wait_until(counted, 15, lambda: f"the refusal counted; exported: {sorted(found)}")
    return found


PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless", "offset"}  # fmt: skip


def promql(expression: str) -> tuple[set[str], set[str]]:
    """The metric names and the label names a PromQL expression (or Grafana's
    ``label_values(…)``) uses; Grafana's ``$variables`` left out."""
    labels: set[str] = set()
    text = re.sub(r"\[[^\]]*\]", " ", expression)  # ranges: [$__rate_interval], [5m]
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text)
    if label_values:
        text = label_values.group(1)
        labels.add(label_values.group(2))
    for matchers in re.findall(r"\{([^}]*)\}", text):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", matchers))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for grouping in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text
    ):
        labels.update(re.findall(r"\w+", grouping))
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r'"[^"]*"', " ", text)
    names = {
        m.group(0)
        for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*(?!\w*\s*\()", text)
        if m.group(0) not in PROMQL_KEYWORDS
    }
    return names, labels


def test_promql_names_are_read_as_prometheus_reads_them() -> None:
    """The reader the dashboard test relies on: functions, keywords, ranges and Grafana's
    variables are not metric names; matchers and groupings name labels."""
    names, labels = promql(
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{job=~"$job", code!="1"}'
        "[$__rate_interval]))) / on (instance) group_left y offset 5m"
    )
    assert names == {"x_bucket", "y"}
    assert labels == {"le", "job", "code", "instance"}
    assert promql('label_values(up{job=~"$job"}, instance)') == ({"up"}, {"job", "instance"})


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # inside collapsed rows
    return found


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every query the dashboard runs: its panels' and its variables'."""
    found = [(panel["title"], target["expr"]) for panel in panels()
             for target in panel.get("targets", [])]  # fmt: skip
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append(
                (f"${variable['name']}", query if isinstance(query, str) else query["query"])
            )
    return found


def family(name: str, names: set[str]) -> str:
    """A histogram's series (_bucket, _sum, _count) under its family's name."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and f"{base}_bucket" in names:
            return base
    return name


def test_the_dashboard_imports_with_a_prometheus_data_source_input() -> None:
    """Grafana's import asks for DS_PROMETHEUS; every panel, query and variable uses it."""
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    (data_source,) = board["__inputs"]
    assert data_source["name"] == "DS_PROMETHEUS"
    assert (data_source["type"], data_source["pluginId"]) == ("datasource", "prometheus")
    uses = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == uses, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", uses) == uses, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == uses, variable["name"]


def test_the_dashboard_charts_only_series_a_real_server_exports(
    series: dict[str, set[str]],
) -> None:
    """Every metric name is one the server exports (with prometheus-client's _total and
    _bucket), every label one of its series' or the target's (job, instance)."""
    labels = set().union(*series.values()) | TARGET_LABELS
    for where, expression in expressions():
        names, used = promql(expression)
        assert names, (where, expression)
        assert names <= series.keys(), (where, names - series.keys())
        assert used <= labels, (where, used - labels)


def test_the_dashboard_charts_every_series_a_real_server_exports(
    series: dict[str, set[str]],
) -> None:
    exported_families = {family(n, set(series)) for n in series if not n.endswith("_created")}
    charted = {family(n, set(series)) for _, e in expressions() for n in promql(e)[0]}
    assert exported_families <= charted, sorted(exported_families - charted)


def test_the_metrics_guide_lists_every_series_a_real_server_exports(
    series: dict[str, set[str]],
) -> None:
    """Each family, as a scrape names it (counters with _total), in the guide's table; and its
    PromQL examples use only those series."""
    guide = METRICS_GUIDE.read_text()
    exported_families = {family(n, set(series)) for n in series if not n.endswith("_created")}
    for name in exported_families:
        assert re.search(rf"^\|[^|\n]*`{name}[`{{]", guide, re.M), f"{name} is not in the table"
    examples = re.findall(r"^```promql\n(.*?)^```", guide, re.M | re.S)
    assert examples
    labels = set().union(*series.values()) | TARGET_LABELS
    for line in "".join(examples).splitlines():
        names, used = promql(line)
        assert names <= series.keys() and used <= labels, line
