#!/usr/bin/env python3
"""chmigrate next to its peers and next to the server's own floor.

Runs on one machine, against the dev servers of scripts/dev-cluster.sh, and
prints Markdown tables (also written as JSON to <scratch>/results.json):

  1. apply, single node: N single-statement and N three-statement migrations,
     fresh database per tool per round, same server and same SQL for every
     tool: chmigrate, the floor (the same statements over one keep-alive HTTP
     connection, nothing else), the floor plus one chmigrate-shaped ledger row
     per migration, the PyPI tool clickhouse-migrations and the npm tool
     clickhouse-migrations.
  2. apply, 2x2 cluster: N_CLUSTER single-statement migrations with ON CLUSTER
     (chmigrate adds it itself; the floor and the peers get it written in the
     SQL, which both peers run as written).
  3. no-op: NOOP_N migrations already applied; the time of a run that finds
     nothing to do, and chmigrate's own share of it (wall time minus the
     server round trips it logs at debug level).
  4. a per-request breakdown of one chmigrate apply run (ledger insert,
     statements, setup/lock/reads, time outside requests).

Every number is a whole process run timed from the outside (wall clock),
divided by the number of migrations; each round runs every tool once, in an
order rotated per round; medians and min-max over rounds; ratios are the
median of the per-round ratios, so drift of a shared machine between rounds
cancels out. A benchmark, not a test: it never fails on a number.

Only the Python standard library is used. bench/run.sh installs the peers and
calls this; run it directly with --help for the knobs.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse

ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------- server ---


class ServerError(Exception):
    pass


class CH:
    """One keep-alive HTTP connection to one ClickHouse server."""

    def __init__(self, url, timeout=600):
        u = urllib.parse.urlparse(url)
        self.url = url
        self.host = u.hostname
        self.port = u.port or 8123
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def q(self, sql, params=None, retry=True):
        """Runs one statement; returns the body as text; raises ServerError."""
        if self.conn is None:
            self._connect()
        path = "/"
        if params:
            path += "?" + urllib.parse.urlencode(params)
        body = sql.encode()
        try:
            self.conn.request("POST", path, body=body, headers={"Connection": "keep-alive"})
            resp = self.conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
        except (http.client.HTTPException, ConnectionError, OSError):
            # The server closes idle keep-alive connections after a few
            # seconds; reconnect once.
            self.conn.close()
            self.conn = None
            if not retry:
                raise
            return self.q(sql, params, retry=False)
        if resp.status != 200:
            raise ServerError(f"{resp.status}: {data.strip()[:500]} (query: {sql[:200]})")
        return data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ------------------------------------------------------------ workloads ---


TABLE_COLS = "(id UInt64, v String) ENGINE = MergeTree() ORDER BY id"


def migration_sql(db, i, shape, on_cluster=None):
    """The statements of migration i (1-based). db=None: chmigrate's
    ${database} placeholder. on_cluster: written into each statement."""
    prefix = "${database}" if db is None else db
    oc = f" ON CLUSTER {on_cluster}" if on_cluster else ""
    if shape == 1:
        return [f"CREATE TABLE {prefix}.t{i}{oc} {TABLE_COLS}"]
    return [
        f"CREATE TABLE {prefix}.a{i}{oc} {TABLE_COLS}",
        f"CREATE TABLE {prefix}.b{i}{oc} {TABLE_COLS}",
        f"ALTER TABLE {prefix}.a{i}{oc} ADD COLUMN extra UInt32 DEFAULT 0",
    ]


def tables_per_migration(shape):
    return 1 if shape == 1 else 2


def file_text(stmts):
    return "".join(s + ";\n" for s in stmts)


# ---------------------------------------------------------------- tools ---


class Failure(Exception):
    pass


def short_error(text, limit=400):
    """The most telling lines of a tool's output (ANSI colors and server
    stack traces removed)."""
    text = ANSI.sub("", text)
    lines = []
    for ln in text.splitlines():
        ln = ln.split("Stack trace", 1)[0].strip()
        if not ln or re.match(r"^\d+\. ", ln) or ln.startswith("File "):
            continue
        lines.append(ln)
    keep = [ln for ln in lines if re.search(r"error|exception|code:|failed|refused", ln, re.I)]
    picked = keep[-3:] if keep else lines[-3:]
    out = " | ".join(dict.fromkeys(picked))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def clean_env(extra=None):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHMIGRATE_", "CH_MIGRATIONS_", "DB_", "CLICKHOUSE_"))
        and k not in ("MIGRATIONS_DIR", "MIGRATIONS", "LOCK", "CLUSTER_NAME", "MIGRATIONS_TABLE")
    }
    env.update(extra or {})
    return env


class Tool:
    name = "?"
    key = "?"
    needs_written_on_cluster = True  # statements must carry ON CLUSTER themselves

    def file_name(self, i):
        raise NotImplementedError

    def write_folder(self, folder, db, n, shape, cluster):
        """Writes migrations 1..n; tools that need ON CLUSTER written get it
        (and the database name) in the SQL, chmigrate gets ${database}."""
        for i in range(1, n + 1):
            if self.needs_written_on_cluster:
                stmts = migration_sql(db, i, shape, cluster)
            else:
                stmts = migration_sql(None, i, shape)
            with open(os.path.join(folder, self.file_name(i)), "w") as f:
                f.write(file_text(stmts))

    def command(self, target, db, folder):
        raise NotImplementedError

    def env(self):
        return clean_env()

    def ledger_tables(self):
        return set()

    def run(self, target, db, folder, cwd):
        cmd = self.command(target, db, folder)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=cwd, env=self.env(), capture_output=True, text=True)
        took = time.perf_counter() - t0
        if p.returncode != 0:
            raise Failure(f"exit {p.returncode}: {short_error(p.stderr + chr(10) + p.stdout)}")
        return took, p


class Chmigrate(Tool):
    name = "chmigrate"
    key = "chmigrate"
    needs_written_on_cluster = False

    def __init__(self, binary, version):
        self.binary = binary
        self.version = version

    def file_name(self, i):
        return f"V{i}__m{i}.sql"

    def command(self, target, db, folder, extra=()):
        cmd = [self.binary, "--url", target.url, "--database", db, "--dir", folder]
        if target.cluster:
            cmd += ["--cluster", target.cluster]
        return cmd + list(extra) + ["migrate"]

    def ledger_tables(self):
        return {"schema_migrations", "schema_migrations_lock"}


class PyPeer(Tool):
    name = "clickhouse-migrations (PyPI)"
    key = "python"

    def __init__(self, exe, version, table_engine=None, label=None, key=None):
        self.exe = exe
        self.version = version
        self.table_engine = table_engine
        if label:
            self.name = label
        if key:
            self.key = key

    def file_name(self, i):
        return f"{i:04d}_m{i}.sql"

    def command(self, target, db, folder):
        # The PyPI tool speaks the native TCP protocol (clickhouse-driver).
        cmd = [
            self.exe, "migrate",
            "--db-host", target.host, "--db-port", str(target.tcp_port),
            "--db-user", "default", "--db-password", "",
            "--db-name", db, "--migrations-dir", folder,
        ]
        if target.cluster:
            cmd += ["--cluster-name", target.cluster]
        if self.table_engine:
            cmd += ["--migrations-table-engine", self.table_engine]
        return cmd

    def ledger_tables(self):
        return {"schema_versions"}


class NodePeer(Tool):
    name = "clickhouse-migrations (npm)"
    key = "node"

    def __init__(self, node, cli, version):
        self.node = node
        self.cli = cli
        self.version = version

    def file_name(self, i):
        return f"{i}_m{i}.sql"

    def command(self, target, db, folder):
        cmd = [
            self.node, self.cli, "migrate",
            "--host", target.url, "--user", "default", "--password", "",
            "--db", db, "--migrations-home", folder,
        ]
        if target.cluster:
            # Creates the database ON CLUSTER; its _migrations table is
            # created without ON CLUSTER (entry node only).
            cmd += ["--db-engine", f"ON CLUSTER {target.cluster}"]
        return cmd

    def ledger_tables(self):
        return {"_migrations"}


class Target:
    def __init__(self, url, tcp_port, cluster=None, node_urls=()):
        self.url = url
        self.host = urllib.parse.urlparse(url).hostname
        self.tcp_port = tcp_port
        self.cluster = cluster
        self.node_urls = list(node_urls) or [url]

    def oc(self):
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""


# ---------------------------------------------------------------- bench ---


def fmt_ms(x):
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x):
    if x is None:
        return "—"
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


class Bench:
    def __init__(self, args):
        self.args = args
        self.scratch = args.scratch
        self.run_id = f"{int(time.time()) % 100000:05d}{os.getpid() % 1000:03d}"
        self.dbs = {}  # db -> Target, for cleanup
        self.results = {"run_id": self.run_id, "sections": {}}
        self.sample_ledger = None  # (create sql template, row json)
        self.work = os.path.join(self.scratch, f"run-{self.run_id}")
        os.makedirs(self.work, exist_ok=True)

    def log(self, msg):
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def db_name(self, *parts):
        return "chmb_" + self.run_id + "_" + "_".join(parts)

    # ------------------------------------------------------ db helpers --

    def drop_db(self, target, db):
        ch = CH(target.url)
        try:
            ch.q(f"DROP DATABASE IF EXISTS {db}{target.oc()}")
        finally:
            ch.close()
        self.dbs.pop(db, None)

    def count_tables(self, target, db, exclude):
        """Tables of db on every node of the target (must be equal)."""
        counts = []
        excl = ",".join(f"'{t}'" for t in sorted(exclude)) or "''"
        for url in target.node_urls:
            ch = CH(url)
            try:
                counts.append(
                    int(
                        ch.q(
                            f"SELECT count() FROM system.tables WHERE database = '{db}' "
                            f"AND name NOT IN ({excl})"
                        ).strip()
                    )
                )
            finally:
                ch.close()
        return counts

    def cleanup(self):
        for db, target in list(self.dbs.items()):
            try:
                self.drop_db(target, db)
            except Exception as e:  # noqa: BLE001 - best effort
                self.log(f"could not drop {db}: {e}")

    # ---------------------------------------------------------- floor --

    def floor_run(self, target, db, n, shape, ledger=False):
        """Seconds to send the N migrations' statements over one keep-alive
        connection (database created before the clock starts). With ledger:
        plus one insert of one chmigrate-shaped ledger row per migration."""
        ch = CH(target.url)
        self.dbs[db] = target
        try:
            ch.q(f"CREATE DATABASE {db}{target.oc()}")
            stmts = [migration_sql(db, i, shape, target.cluster) for i in range(1, n + 1)]
            insert = None
            if ledger:
                create_sql, row = self.sample_ledger
                ch.q(create_sql.replace("{db}", db))
                insert = (f"INSERT INTO {db}.schema_migrations FORMAT JSONEachRow\n", row)
            ch.q("SELECT 1")  # connection open before the clock starts
            t0 = time.perf_counter()
            for group in stmts:
                if insert:
                    ch.q(insert[0] + insert[1])
                for s in group:
                    ch.q(s)
            took = time.perf_counter() - t0
        finally:
            ch.close()
        return took

    def capture_ledger_shape(self, target, db):
        """chmigrate's ledger DDL and one of its rows, read back from a
        database chmigrate just migrated (single node only)."""
        ch = CH(target.url)
        try:
            create = ch.q(f"SHOW CREATE TABLE {db}.schema_migrations FORMAT TSVRaw").strip()
            row = ch.q(
                f"SELECT * FROM {db}.schema_migrations WHERE event = 'statement_done' "
                "ORDER BY seq LIMIT 1 FORMAT JSONEachRow"
            ).strip()
        finally:
            ch.close()
        create = create.replace(f"{db}.", "{db}.")
        self.sample_ledger = (create, row)

    # ----------------------------------------------------- apply section --

    def apply_section(self, title, key, target, tools, n, shape, rounds, with_ledger_floor):
        self.log(f"{title}: {n} migrations × {shape} statement(s), {rounds} round(s)")
        entries = ["floor"] + (["floor_ledger"] if with_ledger_floor else []) + [t.key for t in tools]
        by_key = {t.key: t for t in tools}
        times = {e: [] for e in entries}
        errors = {}
        base = os.path.join(self.work, key)
        os.makedirs(base, exist_ok=True)
        expected = n * tables_per_migration(shape)
        for r in range(rounds):
            order = entries[r % len(entries):] + entries[: r % len(entries)]
            # chmigrate must run before the ledger-floor in the first round
            # (the floor copies its ledger's shape).
            if "floor_ledger" in order and self.sample_ledger is None:
                order.remove("floor_ledger")
                order.append("floor_ledger")
            for e in order:
                if e in errors:
                    continue
                db = self.db_name(key, e, str(r))
                try:
                    if e == "floor":
                        took = self.floor_run(target, db, n, shape)
                    elif e == "floor_ledger":
                        if self.sample_ledger is None:
                            raise Failure("no chmigrate ledger to copy the shape from")
                        took = self.floor_run(target, db, n, shape, ledger=True)
                    else:
                        tool = by_key[e]
                        folder = os.path.join(base, f"{e}-{r}")
                        shutil.rmtree(folder, ignore_errors=True)
                        os.makedirs(folder)
                        tool.write_folder(folder, db, n, shape, target.cluster if tool.needs_written_on_cluster else None)
                        self.dbs[db] = target
                        took, _ = tool.run(target, db, folder, self.work)
                        counts = self.count_tables(target, db, tool.ledger_tables())
                        if any(c != expected for c in counts):
                            raise Failure(
                                f"ran, but the database has {counts} table(s) per node, expected {expected}"
                            )
                        if e == "chmigrate" and self.sample_ledger is None and not target.cluster:
                            self.capture_ledger_shape(target, db)
                        shutil.rmtree(folder, ignore_errors=True)
                    times[e].append(took)
                    self.log(f"  round {r + 1} {e:<18} {took:7.2f} s  {took * 1e3 / n:8.2f} ms/migration")
                except (Failure, ServerError) as exc:
                    errors[e] = str(exc) + self.diagnose(e, target, db)
                    self.log(f"  round {r + 1} {e:<18} FAILED: {errors[e]}")
                finally:
                    try:
                        self.drop_db(target, db)
                    except ServerError as exc:
                        self.log(f"  could not drop {db}: {exc}")
        rows = self.summarize(entries, times, errors, n)
        section = {
            "title": title, "n": n, "statements_per_migration": shape, "rounds": rounds,
            "target": target.url, "cluster": target.cluster, "rows": rows,
            "labels": {e: self.label(e, by_key) for e in entries},
        }
        self.results["sections"][key] = section
        return section

    def diagnose(self, e, target, db):
        """For the PyPI tool on a cluster: replay the statement it stopped at,
        OPTIMIZE of its empty replicated ledger, over HTTP."""
        if not (e == "python" and target.cluster):
            return ""
        ch = CH(target.url)
        try:
            if ch.q(f"SELECT count() FROM system.tables WHERE database = '{db}' "
                    "AND name = 'schema_versions'").strip() != "1":
                return ""
            ch.q(f"OPTIMIZE TABLE {db}.schema_versions FINAL")
            return f" (replayed `OPTIMIZE TABLE {db}.schema_versions FINAL` over HTTP: succeeded)"
        except ServerError as exc:
            m = re.search(r"Code: (\d+).*?([^.:]*Exception: [^,]*?)(?:, e\.what|\s*\(query|$)", str(exc))
            why = f"Code: {m.group(1)}, {m.group(2).strip()}" if m else short_error(str(exc), 160)
            return (f" — replaying its `OPTIMIZE TABLE {db}.schema_versions FINAL` (the empty "
                    f"ReplicatedMergeTree ledger) over HTTP fails the same way: {why}")
        finally:
            ch.close()

    def label(self, e, by_key):
        if e == "floor":
            return "floor: same statements, 1 keep-alive connection"
        if e == "floor_ledger":
            return "floor + 1 ledger row/migration (chmigrate's ledger shape)"
        t = by_key[e]
        return f"{t.name} {t.version}"

    def summarize(self, entries, times, errors, n):
        per = {e: [t * 1e3 / n for t in times[e]] for e in entries}
        rows = {}
        for e in entries:
            v = per[e]
            row = {"ms": v, "error": errors.get(e)}
            if v:
                row["median"] = statistics.median(v)
                row["min"] = min(v)
                row["max"] = max(v)
            for ref in ("floor", "chmigrate"):
                if ref in per and ref != e:
                    pairs = [a / b for a, b in zip(v, per[ref]) if b > 0]
                    # Rounds line up only while neither side failed.
                    if pairs and len(v) == len(per[ref]):
                        row[f"x_{ref}"] = statistics.median(pairs)
                    elif v and per[ref]:
                        row[f"x_{ref}"] = statistics.median(v) / statistics.median(per[ref])
            rows[e] = row
        return rows

    # ------------------------------------------------------ no-op section --

    def noop_section(self, target, tools, n, rounds, chm):
        self.log(f"no-op: {n} applied migrations, {rounds} round(s)")
        base = os.path.join(self.work, "noop")
        os.makedirs(base, exist_ok=True)
        setup, errors, folders, dbs = {}, {}, {}, {}
        for tool in tools:
            db = self.db_name("noop", tool.key)
            folder = os.path.join(base, tool.key)
            os.makedirs(folder, exist_ok=True)
            tool.write_folder(folder, db, n, 1, None)
            self.dbs[db] = target
            folders[tool.key], dbs[tool.key] = folder, db
            try:
                took, _ = tool.run(target, db, folder, self.work)
                setup[tool.key] = took
                self.log(f"  setup {tool.key:<10} applied {n} in {took:6.1f} s")
                counts = self.count_tables(target, db, tool.ledger_tables())
                if counts != [n]:
                    raise Failure(f"after setup the database has {counts} tables, expected {n}")
            except (Failure, ServerError) as exc:
                errors[tool.key] = str(exc)
                self.log(f"  setup {tool.key} FAILED: {exc}")
        times = {t.key: [] for t in tools}
        for r in range(rounds):
            order = tools[r % len(tools):] + tools[: r % len(tools)]
            for tool in order:
                if tool.key in errors:
                    continue
                try:
                    took, _ = tool.run(target, dbs[tool.key], folders[tool.key], self.work)
                    times[tool.key].append(took * 1e3)
                except Failure as exc:
                    errors[tool.key] = str(exc)
        # chmigrate's own share: debug-level request log, wall minus the sum
        # of the round trips it reports; and a bare process start.
        own = None
        if "chmigrate" not in errors:
            walls, reqs, counts, owns = [], [], [], []
            for _ in range(rounds):
                cmd = chm.command(target, dbs["chmigrate"], folders["chmigrate"], ["--log-format", "json"])
                env = clean_env({"CHMIGRATE_LOG": "chmigrate=debug"})
                t0 = time.perf_counter()
                p = subprocess.run(cmd, cwd=self.work, env=env, capture_output=True, text=True)
                wall = (time.perf_counter() - t0) * 1e3
                if p.returncode != 0:
                    break
                reqs_ms = [r["ms"] for r in parse_requests(p.stderr)]
                walls.append(wall)
                reqs.append(sum(reqs_ms))
                counts.append(len(reqs_ms))
                owns.append(wall - sum(reqs_ms))
            starts = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                subprocess.run([chm.binary, "--version"], capture_output=True, env=clean_env())
                starts.append((time.perf_counter() - t0) * 1e3)
            if owns:
                own = {
                    "wall_ms": statistics.median(walls),
                    "requests": statistics.median(counts),
                    "requests_ms": statistics.median(reqs),
                    "own_ms": statistics.median(owns),
                    "own_min": min(owns),
                    "own_max": max(owns),
                    "process_start_ms": statistics.median(starts),
                }
        for key, db in dbs.items():
            try:
                self.drop_db(target, db)
            except ServerError as exc:
                self.log(f"  could not drop {db}: {exc}")
        rows = {}
        for tool in tools:
            v = times[tool.key]
            row = {"ms": v, "error": errors.get(tool.key), "setup_s": setup.get(tool.key)}
            if v:
                row.update(median=statistics.median(v), min=min(v), max=max(v))
            rows[tool.key] = row
        section = {
            "n": n, "rounds": rounds, "rows": rows, "chmigrate_own": own,
            "labels": {t.key: f"{t.name} {t.version}" for t in tools},
        }
        self.results["sections"]["noop"] = section
        return section

    # ---------------------------------------------------- ledger section --

    def ledger_section(self, target, rounds, inserts=20):
        """What one ledger row costs the server: single-row inserts over one
        keep-alive connection into each tool's ledger table shape."""
        if self.sample_ledger is None:
            return None
        self.log(f"ledger rows: {inserts} single-row inserts per shape, {rounds} round(s)")
        create, row = self.sample_ledger
        db = self.db_name("ledger")
        shapes = {
            "chmigrate (ledger v2): MergeTree, 5 columns (seq, time, run, event, payload)": (
                create.replace("{db}.schema_migrations", f"{db}.chm"), f"INSERT INTO {db}.chm FORMAT JSONEachRow\n{row}"),
            "clickhouse-migrations (PyPI): MergeTree, 4 columns": (
                f"CREATE TABLE {db}.py (version UInt32, md5 String, script String, created_at DateTime DEFAULT now()) "
                "ENGINE = MergeTree ORDER BY tuple(created_at)",
                f"INSERT INTO {db}.py (version, script, md5) FORMAT JSONEachRow\n"
                + json.dumps({"version": 1, "script": migration_sql(db, 1, 1)[0] + ";\n",
                              "md5": "0123456789abcdef0123456789abcdef"})),
            "clickhouse-migrations (npm): MergeTree, 5 columns": (
                f"CREATE TABLE {db}.node (uid UUID DEFAULT generateUUIDv4(), version UInt32, checksum String, "
                "migration_name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY tuple(applied_at)",
                f"INSERT INTO {db}.node FORMAT JSONEachRow\n"
                + json.dumps({"version": 1, "checksum": "0123456789abcdef0123456789abcdef",
                              "migration_name": "1_m1.sql"})),
            "chmigrate's ledger as StripeLog (for comparison)": (
                re.sub(r"ENGINE\s*=.*$", "ENGINE = StripeLog",
                       create.replace("{db}.schema_migrations", f"{db}.chm_stripe"), flags=re.S),
                f"INSERT INTO {db}.chm_stripe FORMAT JSONEachRow\n{row}"),
        }
        ch = CH(target.url)
        self.dbs[db] = target
        per = {k: [] for k in shapes}
        try:
            ch.q(f"CREATE DATABASE {db}")
            for ddl, _ in shapes.values():
                ch.q(ddl)
            names = list(shapes)
            for r in range(rounds):
                for k in names[r % len(names):] + names[: r % len(names)]:
                    ts = []
                    for _ in range(inserts):
                        t0 = time.perf_counter()
                        ch.q(shapes[k][1])
                        ts.append((time.perf_counter() - t0) * 1e3)
                    per[k].append(statistics.median(ts))
        except ServerError as exc:
            self.log(f"  ledger section failed: {exc}")
            return None
        finally:
            ch.close()
            self.drop_db(target, db)
        first = names[0]
        rows = {}
        for k, v in per.items():
            rows[k] = {"ms": v, "median": statistics.median(v), "min": min(v), "max": max(v),
                       "x_chmigrate": statistics.median([a / b for a, b in zip(v, per[first])])}
        section = {"rounds": rounds, "inserts": inserts, "rows": rows}
        self.results["sections"]["ledger"] = section
        return section

    # -------------------------------------------------- breakdown section --

    def breakdown_section(self, target, chm, n, shape, key):
        """One chmigrate apply with request logging, split by request kind."""
        self.log(f"breakdown: chmigrate apply of {n} × {shape}-statement migrations with request log")
        db = self.db_name("prof", key)
        folder = os.path.join(self.work, f"prof-{key}")
        os.makedirs(folder, exist_ok=True)
        chm.write_folder(folder, db, n, shape, None)
        self.dbs[db] = target
        cmd = chm.command(target, db, folder, ["--log-format", "json"])
        env = clean_env({"CHMIGRATE_LOG": "chmigrate=debug"})
        try:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, cwd=self.work, env=env, capture_output=True, text=True)
            wall = (time.perf_counter() - t0) * 1e3
        finally:
            self.drop_db(target, db)
        if p.returncode != 0:
            self.log(f"  breakdown run failed: {short_error(p.stderr)}")
            return None
        reqs = parse_requests(p.stderr)
        # Before the first INSERT (the lock row): SELECTs plus CREATE of the
        # database, the ledger and the lock table. After it: the statements,
        # with a ledger INSERT at each durable point (before and after a
        # statement whose effect cannot be observed) and grouped records at
        # most once a second; at the end the closing ledger inserts, the
        # lock's DROP and a final read.
        cats = {}

        def add(cat, ms):
            c = cats.setdefault(cat, [0, 0.0])
            c[0] += 1
            c[1] += ms

        first_insert = next((i for i, r in enumerate(reqs) if r["verb"] == "INSERT"), len(reqs))
        for i, r in enumerate(reqs):
            v = r["verb"]
            if i < first_insert:
                add("setup: version and reads, CREATE database, ledger, lock", r["ms"])
            elif v == "INSERT":
                add("ledger INSERT (durable points, grouped records, lock/run events)", r["ms"])
            elif v in ("CREATE", "ALTER"):
                add("migration statements", r["ms"])
            elif v == "SELECT":
                add("reads (SELECT: lock holder, max(seq), final state)", r["ms"])
            elif v == "DROP":
                add("lock release (DROP of the lock table)", r["ms"])
            elif v == "SYSTEM":
                add("SYSTEM SYNC REPLICA (before ledger reads)", r["ms"])
            else:
                add(f"other ({v})", r["ms"])
        total_req = sum(r["ms"] for r in reqs)
        cats["outside requests: process start, parse, plan, client"] = [0, wall - total_req]
        section = {"n": n, "shape": shape, "wall_ms": wall, "requests": len(reqs),
                   "where": f"ON CLUSTER {target.cluster} via {target.url}" if target.cluster else target.url,
                   "categories": {k: {"count": c, "ms": ms} for k, (c, ms) in cats.items()}}
        self.results["sections"][f"breakdown_{key}"] = section
        return section


def parse_requests(stderr):
    out = []
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        f = d.get("fields", {})
        if f.get("message") == "request" and "ms" in f:
            out.append({"verb": f.get("verb", "?"), "ms": float(f["ms"])})
    return out


# --------------------------------------------------------------- report ---


def render_apply(section, peer_keys, cluster=False):
    rows = section["rows"]
    lines = [
        f"### {section['title']}",
        "",
        f"{section['n']} migrations × {section['statements_per_migration']} statement(s), "
        f"{section['rounds']} rounds, fresh database per tool per round; "
        "ms per migration (whole run ÷ migrations).",
        "",
        "| tool | ms/migration (median) | min–max | × floor | × chmigrate | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for e, row in rows.items():
        label = section["labels"][e]
        if row.get("median") is None:
            lines.append(f"| {label} | — | — | — | — | **cannot run**: {row['error']} |")
            continue
        note = row["error"] and f"failed in a later round: {row['error']}" or ""
        lines.append(
            f"| {label} | {fmt_ms(row['median'])} | {fmt_ms(row['min'])}–{fmt_ms(row['max'])} | "
            f"{fmt_ratio(row.get('x_floor')) if e != 'floor' else '1×'} | "
            f"{fmt_ratio(row.get('x_chmigrate')) if e != 'chmigrate' else '1×'} | {note} |"
        )
    lines.append("")
    lines += goals(section, peer_keys, cluster)
    return "\n".join(lines)


def goals(section, peer_keys, cluster=False):
    """The ledger-v2 goals (issue 15): on one node, at most 0.5x the fastest
    peer's time; on the cluster, at most 1.3x the distributed-DDL floor and
    faster than every peer that runs there."""
    rows = section["rows"]
    chm = rows.get("chmigrate", {})
    out = []
    if chm.get("median") is None:
        return ["chmigrate did not run: " + str(chm.get("error"))]
    peers = [(k, rows[k]) for k in peer_keys if k in rows and rows[k].get("median") is not None]
    xf = chm.get("x_floor")
    if cluster:
        verdict = "met" if xf is not None and xf <= 1.3 else "not met"
        out.append(f"- Goal at most 1.3× the distributed-DDL floor: chmigrate is {fmt_ratio(xf)} the floor "
                   f"— **{verdict}**.")
        if peers:
            slower = [section["labels"][k] for k, r in peers if r["median"] <= chm["median"]]
            names = ", ".join(f"{section['labels'][k]} {fmt_ratio(r['median'] / chm['median'])}" for k, r in peers)
            out.append(f"- Goal faster than every peer that runs here (peer time ÷ chmigrate's: {names}) "
                       f"— **{'met' if not slower else 'not met'}**.")
        else:
            out.append("- Goal faster than every peer that runs here: no peer ran.")
        return out
    if peers:
        k, best = min(peers, key=lambda kv: kv[1]["median"])
        x = chm["median"] / best["median"]
        verdict = "met" if x <= 0.5 else "not met"
        out.append(
            f"- Goal at most 0.5× the fastest peer's time ({section['labels'][k]}, "
            f"{fmt_ms(best['median'])} ms): chmigrate takes {fmt_ratio(x)} — **{verdict}**."
        )
    else:
        out.append("- Goal at most 0.5× the fastest peer's time: no peer ran.")
    out.append(f"- Next to the floor (the statements alone): chmigrate is {fmt_ratio(xf)} the floor.")
    fl = rows.get("floor_ledger", {})
    if fl.get("median") is not None:
        out.append(
            f"- The floor plus one ledger row per migration (the ledger-v1 way of recording) costs "
            f"{fmt_ms(fl['median'])} ms; chmigrate is {fmt_ratio(fl.get('x_chmigrate') and 1 / fl['x_chmigrate'])} of that."
        )
    return out


def render_cluster(section, peer_keys):
    text = render_apply(section, peer_keys, cluster=True)
    rows = section["rows"]
    fl, chm = rows.get("floor", {}), rows.get("chmigrate", {})
    if fl.get("median") is not None and chm.get("median") is not None:
        share = fl["median"] / chm["median"]
        text += (
            f"\n- ClickHouse's own distributed-DDL latency (the floor) is {fmt_ms(fl['median'])} ms "
            f"per ON CLUSTER statement = {share * 100:.0f}% of chmigrate's {fmt_ms(chm['median'])} ms "
            f"per migration; chmigrate's overhead on top: {fmt_ms(chm['median'] - fl['median'])} ms."
        )
    return text


def render_noop(section):
    lines = [
        "### No-op run",
        "",
        f"{section['n']} migrations applied (by the tool itself, untimed); then `migrate` with nothing "
        f"to do, {section['rounds']} rounds; wall time of the whole process.",
        "",
        "| tool | ms (median) | min–max | × chmigrate | setup: applying all once | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    chm = section["rows"].get("chmigrate", {})
    for key, row in section["rows"].items():
        label = section["labels"][key]
        setup = f"{row['setup_s']:.1f} s" if row.get("setup_s") else "—"
        if row.get("median") is None:
            lines.append(f"| {label} | — | — | — | {setup} | **cannot run**: {row['error']} |")
            continue
        x = row["median"] / chm["median"] if chm.get("median") else None
        lines.append(
            f"| {label} | {fmt_ms(row['median'])} | {fmt_ms(row['min'])}–{fmt_ms(row['max'])} | "
            f"{fmt_ratio(x)} | {setup} | {row['error'] or ''} |"
        )
    own = section.get("chmigrate_own")
    if own:
        lines += [
            "",
            f"chmigrate's own share (separate runs with `CHMIGRATE_LOG=chmigrate=debug --log-format json`, "
            f"medians): wall {fmt_ms(own['wall_ms'])} ms = {own['requests']:.0f} server round trips "
            f"{fmt_ms(own['requests_ms'])} ms + chmigrate's own time **{fmt_ms(own['own_ms'])} ms** "
            f"({fmt_ms(own['own_min'])}–{fmt_ms(own['own_max'])}; it includes starting the process, "
            f"{fmt_ms(own['process_start_ms'])} ms for a bare `chmigrate --version`). "
            f"Goal under 100 ms of own time: **{'met' if own['own_ms'] < 100 else 'not met'}**.",
        ]
    if chm.get("median") is not None:
        lines += [
            "",
            f"Goal a no-op under 50 ms (wall, median): chmigrate {fmt_ms(chm['median'])} ms "
            f"— **{'met' if chm['median'] < 50 else 'not met'}**.",
        ]
    return "\n".join(lines)


def render_ledger(section):
    lines = [
        "### What one ledger row costs the server",
        "",
        f"Single-row inserts over one keep-alive connection, {section['inserts']} per shape per round, "
        f"{section['rounds']} rounds (median of the per-round medians).",
        "",
        "| ledger table | ms per insert (median) | min–max | × chmigrate's |",
        "|---|---:|---:|---:|",
    ]
    for k, r in section["rows"].items():
        lines.append(f"| {k} | {fmt_ms(r['median'])} | {fmt_ms(r['min'])}–{fmt_ms(r['max'])} | "
                     f"{fmt_ratio(r['x_chmigrate'])} |")
    return "\n".join(lines)


def render_breakdown(section):
    n = section["n"]
    lines = [
        f"### Where chmigrate's time goes: one apply of {n} × {section['shape']}-statement migrations, "
        f"{section['where']}",
        "",
        f"Wall {section['wall_ms'] / 1e3:.2f} s = {fmt_ms(section['wall_ms'] / n)} ms per migration, "
        f"{section['requests']} requests (its own debug request log; one run).",
        "",
        "| part | requests | total ms | ms per migration | share |",
        "|---|---:|---:|---:|---:|",
    ]
    for k, c in section["categories"].items():
        lines.append(
            f"| {k} | {c['count'] or '—'} | {c['ms']:.0f} | {fmt_ms(c['ms'] / n)} | "
            f"{c['ms'] / section['wall_ms'] * 100:.0f}% |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------- main ---


def tool_version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=int(env("ROUNDS", "5")))
    ap.add_argument("--cluster-rounds", type=int, default=int(env("CLUSTER_ROUNDS", "0")) or None,
                    help="default: --rounds, at most 3")
    ap.add_argument("--noop-rounds", type=int, default=int(env("NOOP_ROUNDS", "0")) or None,
                    help="default: 2 × --rounds")
    ap.add_argument("--n", type=int, default=int(env("N", "200")))
    ap.add_argument("--n-cluster", type=int, default=int(env("N_CLUSTER", "50")))
    ap.add_argument("--noop-n", type=int, default=int(env("NOOP_N", "1000")))
    ap.add_argument("--sections", default=env("SECTIONS", "single,single3,cluster,ledger,noop,breakdown"))
    ap.add_argument("--scratch", default=env("BENCH_DIR", "/tmp/chmigrate-bench"))
    ap.add_argument("--chmigrate", default=env("CHMIGRATE_BIN", "target/release/chmigrate"))
    ap.add_argument("--single-url", default=env("SINGLE_URL", "http://127.0.0.1:8123"))
    ap.add_argument("--single-tcp", type=int, default=int(env("SINGLE_TCP", "9000")))
    ap.add_argument("--cluster-urls", default=env(
        "CLUSTER_URLS", "http://127.0.0.11:8123,http://127.0.0.12:8123,http://127.0.0.13:8123,http://127.0.0.14:8123"))
    ap.add_argument("--cluster-tcp", type=int, default=int(env("CLUSTER_TCP", "9001")),
                    help="native port of the first cluster node (the entry node)")
    ap.add_argument("--cluster", default=env("CLUSTER", "chm_cluster"))
    ap.add_argument("--peers", default=env("PEERS", "python,node"))
    ap.add_argument("--out", default=None, help="also write the Markdown report here")
    a = ap.parse_args()
    cluster_rounds = a.cluster_rounds or min(a.rounds, 3)
    noop_rounds = a.noop_rounds or 2 * a.rounds
    sections = set(a.sections.split(","))
    peers_wanted = set(p for p in a.peers.split(",") if p)

    os.makedirs(a.scratch, exist_ok=True)
    chm_bin = os.path.abspath(a.chmigrate)
    chm = Chmigrate(chm_bin, tool_version([chm_bin, "--version"]).replace("chmigrate ", ""))
    peers = []
    py_exe = os.path.join(a.scratch, "py", "bin", "clickhouse-migrations")
    node_cli = os.path.join(a.scratch, "node", "node_modules", "clickhouse-migrations", "lib", "cli.js")
    py_ver = node_ver = None
    if "python" in peers_wanted:
        if os.path.exists(py_exe):
            py_ver = tool_version([py_exe, "--version"]).split()[-1]
            peers.append(PyPeer(py_exe, py_ver))
        else:
            print(f"warning: {py_exe} missing (bench/run.sh installs it); PyPI peer skipped", file=sys.stderr)
    if "node" in peers_wanted:
        if os.path.exists(node_cli):
            with open(os.path.join(os.path.dirname(os.path.dirname(node_cli)), "package.json")) as f:
                node_ver = json.load(f)["version"]
            peers.append(NodePeer(shutil.which("node") or "node", node_cli, node_ver))
        else:
            print(f"warning: {node_cli} missing (bench/run.sh installs it); npm peer skipped", file=sys.stderr)
    peer_keys = [p.key for p in peers]

    single = Target(a.single_url, a.single_tcp)
    curls = [u for u in a.cluster_urls.split(",") if u]
    cluster = Target(curls[0], a.cluster_tcp, a.cluster, curls)

    b = Bench(a)
    server_version = CH(single.url).q("SELECT version()").strip()
    facts = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "load_before": os.getloadavg(),
        "clickhouse": server_version,
        "chmigrate": chm.version,
        "python_peer": py_ver,
        "node_peer": node_ver,
        "python": platform.python_version(),
        "node": tool_version(["node", "--version"]),
    }
    b.results["facts"] = facts
    report = []
    t_start = time.perf_counter()
    try:
        if "single" in sections:
            s = b.apply_section("Apply, single node, single-statement migrations", "single1", single,
                                [chm] + peers, a.n, 1, a.rounds, True)
            report.append(render_apply(s, peer_keys))
        if "single3" in sections:
            s = b.apply_section("Apply, single node, three-statement migrations", "single3", single,
                                [chm] + peers, a.n, 3, a.rounds, True)
            report.append(render_apply(s, peer_keys))
        if "cluster" in sections:
            ctools = [chm] + peers
            if any(p.key == "python" for p in peers):
                # On 18.16 the PyPI tool's default replicated ledger fails (its
                # OPTIMIZE … FINAL of the empty ReplicatedMergeTree); it runs
                # a second time with a plain MergeTree ledger on every node.
                ctools.append(PyPeer(py_exe, py_ver, table_engine="MergeTree",
                                     label="clickhouse-migrations (PyPI), --migrations-table-engine MergeTree "
                                           "(ledger not replicated)",
                                     key="python_mt"))
            s = b.apply_section(f"Apply, 2 shards × 2 replicas, ON CLUSTER {a.cluster}", "cluster1", cluster,
                                ctools, a.n_cluster, 1, cluster_rounds, False)
            report.append(render_cluster(s, peer_keys + ["python_mt"]))
        if "ledger" in sections:
            if b.sample_ledger is None:
                # chmigrate's ledger shape, from a small real run.
                b.apply_section("ledger shape", "shape", single, [chm], 2, 1, 1, False)
                b.results["sections"].pop("shape", None)
            s = b.ledger_section(single, a.rounds)
            if s:
                report.append(render_ledger(s))
        if "noop" in sections:
            s = b.noop_section(single, [chm] + peers, a.noop_n, noop_rounds, chm)
            report.append(render_noop(s))
        if "breakdown" in sections:
            for tgt, n, shape, key in ((single, a.n, 1, "single1"), (single, a.n, 3, "single3"),
                                       (cluster, a.n_cluster, 1, "cluster1")):
                s = b.breakdown_section(tgt, chm, n, shape, key)
                if s:
                    report.append(render_breakdown(s))
    finally:
        b.cleanup()
    elapsed = time.perf_counter() - t_start
    facts["driver_seconds"] = round(elapsed)
    facts["load_after"] = os.getloadavg()
    head = [
        "## Results",
        "",
        f"- {facts['date']}; {facts['machine']}; load average before {facts['load_before'][0]:.2f}, "
        f"after {facts['load_after'][0]:.2f}",
        f"- ClickHouse {facts['clickhouse']}; chmigrate {facts['chmigrate']}; "
        f"clickhouse-migrations (PyPI) {py_ver or 'not installed'} on Python {facts['python']}; "
        f"clickhouse-migrations (npm) {node_ver or 'not installed'} on Node {facts['node']}",
        f"- driver time {elapsed / 60:.1f} min",
        "",
    ]
    text = "\n".join(head) + "\n" + "\n\n".join(report) + "\n"
    print(text)
    with open(os.path.join(a.scratch, "results.json"), "w") as f:
        json.dump(b.results, f, indent=2, default=str)
    with open(os.path.join(a.scratch, "results.md"), "w") as f:
        f.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
