"""``Gateway.query``: rows of a declared PostgreSQL query, against a real PostgreSQL cluster
and a real gateway; compared with ``psql`` on the same database."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertmesh import Gateway, InvalidArgument, NotFound
from harness import TOPIC, Stack, fixture_files, free_port, wait_for

PASSWORD = "alertmesh-py-test"
ROWS = 500


def _bin_dir() -> Path | None:
    env = os.environ.get("PG_BIN")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: [int(x) for x in p.split("/")[4].split(".")])
    return Path(found[-1]).parent if found else None


class Postgres:
    """A fresh cluster in a temporary directory on a free port (as the postgres user when root)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="alertmesh-pypg-"))
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.user = pw.pw_uid
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.pwfile = self.dir / "pw"
        self.pwfile.write_text(PASSWORD)
        if self.user is not None:
            os.chown(self.pwfile, self.user, -1)
        self._run([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                   "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", f"--pwfile={self.pwfile}"])
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.dir / "data"), "-c", "listen_addresses=127.0.0.1",
             "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.dir}", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=self.user,
        )
        wait_for(lambda: self._ready(), "postgres to accept connections")

    def _run(self, args: list[str]) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, env={**os.environ, "HOME": "/tmp"})

    def _ready(self) -> bool:
        try:
            self.psql("select 1")
            return True
        except subprocess.CalledProcessError:
            return False

    def psql(self, sql: str) -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-c", sql],
            check=True, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": PASSWORD},
        )
        return out.stdout

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("*** PostgreSQL is not installed: run scripts/postgres.sh (make test installs it) ***")
    db = Postgres(bin_dir)
    db.psql(
        "create table objects (id bigint primary key, object_id text not null, ra double precision, "
        "dec double precision, mag real, big bigint); "
        f"insert into objects select i, 'ZTF' || lpad(i::text, 9, '0'), (i * 7.3)::numeric % 360, "
        f"((i * 3.1)::numeric % 180) - 90, 15 + (i % 70) / 10.0, 9223372036854775807 - i "
        f"from generate_series(1, {ROWS}) i"
    )
    yield db
    db.stop()


@pytest.fixture()
def qstack(pg: Postgres, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path)
    stack.extra_config = f"""
[[databases]]
name = "archive"
url = "postgres://postgres@127.0.0.1:{pg.port}/postgres"
password_file = "{pg.pwfile}"

[[queries]]
name = "objects"
database = "archive"
table = "objects"
namespace = "ZTF"
key = "object_id"
order = "id"
ra = "ra"
dec = "dec"
columns = ["id", "object_id", "ra", "dec", "mag", "big"]
public = true
"""
    stack.start_kafka()
    stack.start_gateway()
    yield stack
    stack.stop()


def test_query_rows_equal_psql_with_exact_int64_and_to_pandas(pg: Postgres, qstack: Stack) -> None:
    with Gateway(qstack.url) as gw:
        assert [q["name"] for q in gw.queries()] == ["objects"]
        rows = [a.record for a in gw.query("objects", where="mag < 17 && big > 0", cone=(10.0, 0.0, 60.0))]
        assert rows, "the query matches rows"
        want = [
            int(line.split("\t")[0])
            for line in pg.psql(
                "select id from objects where mag < 17 and big > 0 and degrees(2 * asin(sqrt("
                "power(sin(radians(dec - 0) / 2), 2) + cos(radians(0)) * cos(radians(dec)) * "
                "power(sin(radians(ra - 10) / 2), 2)))) <= 60 order by id"
            ).split()
        ]
        assert [r["id"] for r in rows] == want
        assert all(r["big"] == 9223372036854775807 - r["id"] for r in rows)
        frame = gw.query("objects", limit=50).to_pandas()
        assert len(frame) == 50
        assert str(frame["big"].dtype) == "int64"
        assert int(frame["big"].iloc[0]) == 9223372036854775806
        with pytest.raises(NotFound):
            list(gw.query("nope"))
        with pytest.raises(InvalidArgument, match="secret"):
            list(gw.query("objects", where="secret < 1"))


def test_query_iterator_resumes_by_itself_after_the_gateway_is_killed(qstack: Stack) -> None:
    with Gateway(qstack.url) as gw:
        stream = gw.query("objects", max_batch_alerts=20)
        ids = []
        for alert in stream:
            ids.append(alert.record["id"])
            if len(ids) == 30:
                qstack.stop_gateway()
                time.sleep(0.3)
                qstack.start_gateway()
        assert ids == list(range(1, ROWS + 1)), "no gap, no repeat"
        assert stream.reconnects >= 1
        again = gw.query("objects", resume=stream.resume_token)
        assert list(again) == []


def test_query_follow_yields_rows_inserted_later_once_each(pg: Postgres, qstack: Stack) -> None:
    with Gateway(qstack.url) as gw:
        stream = gw.query("objects", where="id > 495", follow=True)
        ids = []
        for alert in stream:
            ids.append(alert.record["id"])
            if len(ids) == 5:
                pg.psql(
                    "insert into objects select i, 'ZTF' || i, 1, 1, 17, i "
                    f"from generate_series({ROWS + 1}, {ROWS + 5}) i"
                )
            if len(ids) == 10:
                stream.close()
        assert ids == list(range(496, ROWS + 6))
        pg.psql(f"delete from objects where id > {ROWS}")


def test_an_archive_is_a_query_of_the_original_alerts(pg: Postgres, tmp_path: Path) -> None:
    """``[[archives]]``: the topic kept in PostgreSQL, served as a query whose alerts are the
    originals (decoded ``record``, the Kafka record's ``ref``), filtered on extracted columns."""
    stack = Stack(tmp_path)
    stack.extra_config = f"""
[[databases]]
name = "archive"
url = "postgres://postgres@127.0.0.1:{pg.port}/postgres"
password_file = "{pg.pwfile}"

[[archives]]
name = "py-archive"
topic = "{TOPIC}"
database = "archive"
table = "py_archive"
query = "ztf.history"
public = true
ra = "ra"
dec = "dec"
columns = [
  {{ name = "ra", path = "candidate.ra", type = "float8" }},
  {{ name = "dec", path = "candidate.dec", type = "float8" }},
  {{ name = "magpsf", path = "candidate.magpsf", type = "float8" }},
]
"""
    try:
        stack.start_kafka()
        stack.replay(fixture_files())
        stack.start_gateway()
        def archived() -> bool:
            try:
                return pg.psql("select count(*) from py_archive").strip() == "45"
            except subprocess.CalledProcessError:
                return False  # the table is not created yet

        wait_for(archived, "the archive to hold 45 rows")
        with Gateway(stack.url) as gw:
            alerts = list(gw.query("ztf.history", where="magpsf < 18"))
            want = pg.psql("select ref, object_id from py_archive where magpsf < 18 order by id").split("\n")
            want = [line.split("\t") for line in want if line]
            assert want, "the fixtures hold alerts brighter than 18"
            assert [[a.ref, a.record["objectId"]] for a in alerts] == want
            assert all(a.record["candidate"]["magpsf"] < 18 for a in alerts)
            one = gw.fetch(alerts[0].ref)
            assert one.ref == alerts[0].ref
            assert one.record["candidate"]["candid"] == alerts[0].record["candidate"]["candid"]
    finally:
        stack.stop()
        pg.psql("drop table if exists py_archive")
