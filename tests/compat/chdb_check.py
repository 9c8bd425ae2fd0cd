#!/usr/bin/env python3
"""Run a list of SQL statements on a current ClickHouse (26.x) through chdb.

Usage: chdb_check.py [--format FMT] [--setting NAME=VALUE ...] FILE.json
       (FILE may be "-" for standard input; normally run through
       scripts/chdb-check.sh, which provides a venv with chdb-core)

FILE is a JSON array of objects, executed IN ORDER in ONE persistent chdb
session (a fresh temp dir, removed at the end), each statement on its own:

    {"name": str, "sql": str, "expect": "ok" | "error", "contains": str (optional)}

expect "ok":    the statement must succeed; if "contains" is given, its text
                output must contain that substring.
expect "error": the statement must fail; if "contains" is given, the error
                message must contain it.

Output: a first line with the chdb and ClickHouse versions, then one line per
statement, `ok   <name>` or `FAIL <name>: <reason>`, and a last line
`N passed, M failed`. Exit status 0 if all passed, 1 if any failed, 2 on bad
usage or bad input.

How this mirrors what chmigrate sends over HTTP:
- The output format is --format (default JSONEachRow, like chmigrate's
  `default_format=JSONEachRow` setting); a statement's own FORMAT clause wins.
- INSERT ... FORMAT X followed by inline data in the statement text works as
  over HTTP.
- chdb itself runs "a; b" as two statements, but the HTTP interface rejects
  multi-statements. So every statement is first parsed with formatQuery();
  if the parser says "Multi-statements are not allowed", the statement counts
  as failed with that error and is not executed.
- --setting NAME=VALUE is applied with SET at the start of the session (like
  URL settings, e.g. --setting output_format_json_quote_64bit_integers=1).
"""

import argparse
import json
import os
import re
import sys
import tempfile

MAX_REASON = 600

# The system log a current server's default configuration turns on.
SERVER_LIKE_CONFIG = """<clickhouse>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
</clickhouse>
"""


def one_line(text, limit=MAX_REASON):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def excerpt(text, limit=300):
    """Raw output cut to `limit` chars (shown with repr, so one line)."""
    return text if len(text) <= limit else text[:limit] + "..."


def load_cases(path):
    """Read and validate the statement list; raises ValueError on bad input."""
    try:
        if path == "-":
            data = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of statements")
    for i, case in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(case, dict):
            raise ValueError(f"{where}: expected an object")
        unknown = set(case) - {"name", "sql", "expect", "contains"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "sql", "expect"):
            if not isinstance(case.get(key), str):
                raise ValueError(f"{where}: '{key}' must be a string")
        if case["expect"] not in ("ok", "error"):
            raise ValueError(f"{where}: 'expect' must be \"ok\" or \"error\", got {case['expect']!r}")
        if "contains" in case and not isinstance(case["contains"], str):
            raise ValueError(f"{where}: 'contains' must be a string")
    return data


def escape_param(value):
    # Query parameter values are read in TSV-escaped form.
    return (
        value.replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )


def sql_literal(value):
    """A number as it is, anything else as a quoted string literal."""
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def text_of(result):
    if result is None:
        return ""
    if hasattr(result, "bytes"):
        return result.bytes().decode("utf-8", errors="replace")
    return str(result)


class Runner:
    def __init__(self, sess, fmt):
        self.sess = sess
        self.fmt = fmt

    def multi_statement_error(self, sql):
        """The parser's error if `sql` holds several statements, else None."""
        try:
            self.sess.query(
                "SELECT formatQuerySingleLine({q:String})",
                "TabSeparatedRaw",
                params={"q": escape_param(sql)},
            )
        except Exception as e:  # noqa: BLE001 - any other parse error: let execution report it
            if "Multi-statements are not allowed" in str(e):
                return str(e)
        return None

    def run(self, sql):
        """Returns (ok, text): the output on success, the error message on failure."""
        err = self.multi_statement_error(sql)
        if err is not None:
            return False, err
        try:
            return True, text_of(self.sess.query(sql, self.fmt))
        except Exception as e:  # noqa: BLE001 - chdb raises ChdbError/RuntimeError
            return False, str(e)


def check(case, ok, text):
    """None if the case passed, else the reason it failed."""
    contains = case.get("contains")
    if case["expect"] == "ok":
        if not ok:
            return f"expected success, got error: {one_line(text)}"
        if contains is not None and contains not in text:
            return f"output does not contain {contains!r}; output: {excerpt(text)!r}"
        return None
    if ok:
        return f"expected an error, but it succeeded; output: {excerpt(text)!r}"
    if contains is not None and contains not in text:
        return f"error does not contain {contains!r}; error: {one_line(text)}"
    return None


def package_version():
    try:
        from importlib.metadata import version

        return f"chdb-core {version('chdb-core')}"
    except Exception:  # noqa: BLE001
        import chdb

        return f"chdb {getattr(chdb, '__version__', '?')}"


def main(argv):
    ap = argparse.ArgumentParser(
        description="Check SQL statements on ClickHouse 26.x via chdb (see module docstring)."
    )
    ap.add_argument("file", help="JSON array of {name, sql, expect, contains?}; '-' = stdin")
    ap.add_argument("--format", default="JSONEachRow", help="default output format (JSONEachRow)")
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="session setting applied with SET before the statements (repeatable)",
    )
    args = ap.parse_args(argv)

    try:
        cases = load_cases(args.file)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = []
    for s in args.setting:
        name, sep, value = s.partition("=")
        if not sep or not name.strip():
            print(f"error: --setting wants NAME=VALUE, got {s!r}", file=sys.stderr)
            return 2
        settings.append((name.strip(), value))

    try:
        from chdb import session as chdb_session
    except ImportError as e:
        print(f"error: cannot import chdb ({e}); run scripts/chdb-check.sh", file=sys.stderr)
        return 2

    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="chmigrate-chdb-") as tmp:
        # A server's default config.xml enables system.query_log (which
        # `chmigrate profile` reads); chdb's embedded engine has none unless
        # given a config that names it.
        config = os.path.join(tmp, "config.xml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(SERVER_LIKE_CONFIG)
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        sess = chdb_session.Session(f"file:{data}?config-file={config}")
        try:
            version = text_of(sess.query("SELECT version()", "TabSeparatedRaw")).strip()
            # A running server has flushed its query log long before
            # chmigrate reads it; the table exists from the first flush on.
            sess.query("SELECT 1 SETTINGS log_queries = 1", "TabSeparated")
            sess.query("SYSTEM FLUSH LOGS", "TabSeparated")
            print(f"{package_version()}, ClickHouse {version}", flush=True)
            for name, value in settings:
                literal = sql_literal(value)
                try:
                    sess.query(f"SET {name} = {literal}", "TabSeparated")
                except Exception as e:  # noqa: BLE001
                    print(f"error: --setting {name}={value}: {one_line(e)}", file=sys.stderr)
                    return 2
            runner = Runner(sess, args.format)
            for case in cases:
                ok, text = runner.run(case["sql"])
                reason = check(case, ok, text)
                name = " ".join(case["name"].splitlines())  # one line per statement
                if reason is None:
                    passed += 1
                    print(f"ok   {name}", flush=True)
                else:
                    failed += 1
                    print(f"FAIL {name}: {reason}", flush=True)
        finally:
            sess.close()
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
