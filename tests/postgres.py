"""A throwaway PostgreSQL cluster for the tests: `initdb` in a temp dir, started on a free
loopback port (fsync off), one fresh database per test, removed at the end of the session.

It needs Debian's `postgresql` (initdb, pg_ctl, on PATH or under /usr/lib/postgresql/*/bin).
initdb refuses root, so as root the cluster runs as the `postgres` user. Without the binaries
the PostgreSQL variants are skipped, unless OPENFT_TEST_POSTGRES is set (CI sets it): then they
fail, so a CI machine without PostgreSQL cannot pass by skipping.
"""

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.helpers import free_port


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


class PostgresCluster:
    USER = "openft"

    def __init__(self):
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not (initdb and pg_ctl):
            message = "PostgreSQL is not installed (initdb, pg_ctl): apt-get install postgresql"
            if os.environ.get("OPENFT_TEST_POSTGRES"):
                pytest.fail(message + " (OPENFT_TEST_POSTGRES is set)", pytrace=False)
            pytest.skip(message)
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="openft-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(initdb, "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {self.dir} -p {self.port} -h 127.0.0.1 -F -c max_connections=200"
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-o", options, "start")

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The SQLAlchemy URL of a new, empty database."""
        name = "test_" + secrets.token_hex(6)
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.USER} dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)
