"""Redis clients from a broker URL: ``redis://``, ``rediss://`` and ``unix://`` as redis-py reads
them, ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`` for the
master that Sentinel names (found again on every new connection, so after a failover too), or
``redis+cluster://[[user]:password@]host:port[,host:port…]`` for a Redis Cluster
(``rediss+cluster://`` over TLS)."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_TLS_SCHEME = "rediss+cluster"

_FORMAT = (
    "use redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]"
    "[?sentinel_password=…], e.g. redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0"
)


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    """The master's (and its replicas')."""
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """Read a ``redis+sentinel://`` URL; ``ValueError`` says what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"Not a Sentinel URL: {url!r}; {_FORMAT}")
        hosts = parts.netloc.rpartition("@")[2]
        sentinels = []
        for host in filter(None, hosts.split(",")):
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"Sentinel address {host!r} needs host:port in {url!r}; {_FORMAT}")
            sentinels.append((name.strip("[]"), int(port)))
        path = [p for p in parts.path.split("/") if p]
        if not sentinels or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(f"Incomplete Sentinel URL {url!r}; {_FORMAT}")
        query = parse_qs(parts.query)
        return cls(
            sentinels=sentinels,
            service=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sentinel_password=query.get("sentinel_password", [None])[0],
        )

    def sentinel_kwargs(self) -> dict[str, Any]:
        return {"password": self.sentinel_password} if self.sentinel_password else {}

    def master_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"db": self.db}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs


_CLUSTER_FORMAT = (
    "use redis+cluster://[[user]:password@]host:port[,host:port…] (rediss+cluster:// for TLS, "
    "with ?ssl_ca_certs=…&ssl_certfile=…&ssl_keyfile=…&ssl_cert_reqs=required|optional|none), "
    "e.g. redis+cluster://redis-1:6379,redis-2:6379 (any of the cluster's nodes)"
)

_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
"""What a ``rediss+cluster://`` URL's query may set, as redis-py names it."""


@dataclasses.dataclass(frozen=True)
class ClusterURL:
    """What a ``redis+cluster://`` URL names: nodes to learn the cluster from, and credentials."""

    nodes: list[tuple[str, int]]
    username: str | None = None
    password: str | None = None
    tls: dict[str, str] | None = None
    """With ``rediss+cluster://``: TLS, and its options (``ssl_ca_certs``…)."""

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        """Read a ``redis+cluster://`` URL; ``ValueError`` says what is wrong."""
        parts = urlsplit(url)
        if parts.scheme not in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
            raise ValueError(f"Not a Redis Cluster URL: {url!r}; {_CLUSTER_FORMAT}")
        nodes = []
        for host in filter(None, parts.netloc.rpartition("@")[2].split(",")):
            name, _, port = host.rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(
                    f"Cluster node {host!r} needs host:port in {url!r}; {_CLUSTER_FORMAT}"
                )
            nodes.append((name.strip("[]"), int(port)))
        if not nodes:
            raise ValueError(f"No cluster node in {url!r}; {_CLUSTER_FORMAT}")
        if parts.path.strip("/") not in ("", "0"):
            raise ValueError(
                f"A Redis Cluster has only database 0, not {parts.path.strip('/')!r} in {url!r}; "
                "isolate deployments with GQL_PUBSUB['CHANNEL_PREFIX'] instead"
            )
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - set(_TLS_OPTIONS))
        if unknown or (query and parts.scheme != CLUSTER_TLS_SCHEME):
            raise ValueError(
                f"Unknown option(s) {unknown or sorted(query)} in {url!r} (TLS options need "
                f"rediss+cluster://); {_CLUSTER_FORMAT}"
            )
        return cls(
            nodes=nodes,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=query if parts.scheme == CLUSTER_TLS_SCHEME else None,
        )

    def credentials(self) -> dict[str, Any]:
        """The client options it names: credentials, and TLS."""
        kwargs: dict[str, Any] = {}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.tls is not None:
            kwargs["ssl"] = True
            kwargs.update(self.tls)
        return kwargs


def async_cluster_client(url: str, **kwargs: Any) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio client of the Redis Cluster ``url`` names: commands go to their key's node."""
    named = ClusterURL.parse(url)
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in named.nodes]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **named.credentials(), **kwargs)


def sync_cluster_client(url: str, **kwargs: Any) -> redis.cluster.RedisCluster:
    """A client of the Redis Cluster ``url`` names, for any thread."""
    named = ClusterURL.parse(url)
    nodes = [
        redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in named.nodes
    ]
    return redis.cluster.RedisCluster(startup_nodes=nodes, **named.credentials(), **kwargs)


def async_client(url: str, **kwargs: Any) -> redis.asyncio.Redis:
    """An asyncio client of the Redis ``url`` names (``kwargs``: connection options)."""
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return redis.asyncio.Redis.from_url(url, **kwargs)
    named = SentinelURL.parse(url)
    sentinel = redis.asyncio.sentinel.Sentinel(
        named.sentinels, sentinel_kwargs=named.sentinel_kwargs()
    )
    client: Any = sentinel.master_for(named.service, **named.master_kwargs(), **kwargs)
    client.gql_pubsub_sentinel = sentinel  # closed with it
    return client  # type: ignore[no-any-return]


def sync_client(url: str, **kwargs: Any) -> redis.Redis:
    """A client of the Redis ``url`` names, for any thread."""
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return redis.Redis.from_url(url, **kwargs)
    named = SentinelURL.parse(url)
    sentinel = redis.sentinel.Sentinel(
        named.sentinels,
        sentinel_kwargs={
            **named.sentinel_kwargs(),
            **{k: v for k, v in kwargs.items() if k.startswith("socket_")},
        },
    )
    client: Any = sentinel.master_for(named.service, **named.master_kwargs(), **kwargs)
    client.gql_pubsub_sentinel = sentinel
    return client  # type: ignore[no-any-return]


async def aclose(client: redis.asyncio.Redis) -> None:
    """Close an asyncio client, and the connections to Sentinel it found its master with."""
    await client.aclose()
    sentinel = getattr(client, "gql_pubsub_sentinel", None)
    if sentinel is not None:
        for each in sentinel.sentinels:
            await each.aclose()


def close(client: redis.Redis) -> None:
    """Close a client, and the connections to Sentinel it found its master with."""
    client.close()
    sentinel = getattr(client, "gql_pubsub_sentinel", None)
    if sentinel is not None:
        for each in sentinel.sentinels:
            each.close()


def database(url: str) -> int:
    """The database number ``url`` names (0 when it names none)."""
    if url.startswith((CLUSTER_SCHEME + "://", CLUSTER_TLS_SCHEME + "://")):
        return 0
    if url.startswith(SENTINEL_SCHEME + "://"):
        return SentinelURL.parse(url).db
    from redis.connection import parse_url

    return int(parse_url(url).get("db") or 0)  # type: ignore[no-untyped-call]
