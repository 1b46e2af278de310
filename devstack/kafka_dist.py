"""Kafka's jars, fetched once from Maven Central into a cache, and the JVM commands to run them."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

POM = Path(__file__).with_name("kafka-pom.xml")
MIN_JAVA = 17
_FETCH_TIMEOUT_S = 900

# Startup-oriented flags for a small dev broker: one GC thread, C1 only (the broker spends its
# first seconds loading classes, not in hot loops), no perf-data file in /tmp.
_JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


class BrokerError(RuntimeError):
    """The dev Kafka broker could not be installed, started or stopped; the message says why."""


def _default_cache_root() -> Path:
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache" / "kafka"
    return Path.home() / ".cache" / "txcat" / "kafka"


class DevKafkaSettings(BaseSettings):
    """Where the broker's jars are cached: ``KAFKA_CACHE_DIR``, default ``<repo>/.cache/kafka``."""

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", env_file=".env", frozen=True, extra="ignore"
    )

    cache_dir: Path = Field(default_factory=_default_cache_root)


@functools.cache
def kafka_version() -> str:
    """The Kafka version pinned in ``kafka-pom.xml``."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise BrokerError(f"no <kafka.version> property in {POM}")
    return match.group(1).strip()


@dataclass(frozen=True)
class KafkaDistribution:
    """Kafka's jars in the local cache and the java that runs them."""

    home: Path
    java: str

    @property
    def lib(self) -> Path:
        return self.home / "lib"

    def command(self, main: str, *args: str, jvm: tuple[str, ...] = ()) -> list[str]:
        """The argv that runs ``main`` on Kafka's classpath."""
        return [self.java, *_JVM_FLAGS, *jvm, "-cp", f"{self.lib}/*", main, *args]

    def class_archive(self, *, record: bool) -> ClassArchive:
        """This machine's class archive for Kafka; if there is none yet and ``record``, record one.

        Loading Kafka's classes is most of a broker's startup; a dynamic CDS archive roughly
        halves it. The JVM ignores an archive that does not match it, so a stale one is harmless.
        """
        # An archive only fits the JVM that wrote it: key it by the java binary.
        real = Path(os.path.realpath(self.java))
        key = hashlib.sha256(f"{real}:{real.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        path = self.home / "cds" / f"kafka-{key}.jsa"
        if path.is_file() or not record:
            return ClassArchive(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return ClassArchive(path, path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp"))


@dataclass(frozen=True)
class ClassArchive:
    """A JVM class-data-sharing archive, used if present or else recorded when the JVM exits."""

    path: Path
    recording: Path | None = None

    @property
    def jvm_flags(self) -> tuple[str, ...]:
        if self.recording is not None:
            return ("-Xlog:cds*=off", f"-XX:ArchiveClassesAtExit={self.recording}")
        if self.path.is_file():
            return (f"-XX:SharedArchiveFile={self.path}",)
        return ()

    def adopt(self, *, clean_exit: bool) -> None:
        """After the JVM has exited: keep the recorded archive if the JVM could finish it."""
        if self.recording is None or not self.recording.exists():
            return
        if clean_exit and self.recording.stat().st_size > 0 and not self.path.exists():
            os.replace(self.recording, self.path)
            logger.info("Kafka class archive recorded at %s", self.path)
        else:
            self.recording.unlink(missing_ok=True)


def ensure_distribution(cache_root: Path | None = None) -> KafkaDistribution:
    """Check for java, fetch Kafka's jars with Maven unless already cached, return them."""
    java = _find_java()
    home = (cache_root or DevKafkaSettings().cache_dir) / kafka_version()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if not _is_fetched(home, digest):
        home.mkdir(parents=True, exist_ok=True)
        with file_lock(home / ".lock"):
            if not _is_fetched(home, digest):
                _fetch(home, digest)
    return KafkaDistribution(home=home, java=java)


def _find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            f"`java` is not on PATH: the dev Kafka broker needs a Java {MIN_JAVA}+ runtime "
            "(e.g. `apt-get install openjdk-17-jre-headless`)."
        )
    major = _java_major(java)
    if major is not None and major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major}; Kafka {kafka_version()} needs Java {MIN_JAVA}+."
        )
    return java


def _java_major(java: str) -> int | None:
    # Read JAVA_HOME/release instead of running `java -version`: no extra JVM start.
    release = Path(os.path.realpath(java)).parents[1] / "release"
    try:
        match = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(), re.MULTILINE)
    except OSError:
        return None
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _is_fetched(home: Path, digest: str) -> bool:
    stamp = home / "lib.sha256"
    return stamp.is_file() and stamp.read_text().strip() == digest and (home / "lib").is_dir()


def _fetch(home: Path, digest: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"`mvn` is not on PATH: Maven 3.6+ is needed once to download Kafka {kafka_version()} "
            f"from Maven Central into {home} (e.g. `apt-get install maven`)."
        )
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    shutil.rmtree(home / "cds", ignore_errors=True)  # archives are tied to the old jars
    logger.info("Downloading Kafka %s jars into %s", kafka_version(), lib)
    argv = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]  # fmt: skip
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"Maven did not fetch Kafka within {_FETCH_TIMEOUT_S}s") from exc
    if result.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise BrokerError(f"Maven could not fetch Kafka {kafka_version()}:\n{output}")
    (home / "lib.sha256").write_text(digest + "\n")


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
