"""The connection-string readers of the SQL drivers (_drivers/mysql.py, _drivers/postgres.py)."""

from __future__ import annotations

import ssl

import pymysql
import pytest

from layotto.components._drivers import mysql, postgres
from layotto.errors import ConfigError

WHERE = "state.mysql.metadata.connectionString"


def test_go_dsn_full_form() -> None:
    dsn = mysql.parse_go_dsn("app:s3cr@t@tcp(db.example:3307)/orders?timeout=5s&tls=skip-verify", WHERE)
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.database) == ("app", "s3cr@t", "db.example", 3307, "orders")
    assert dsn.params == {"timeout": "5s", "tls": "skip-verify"}
    args = dsn.connect_args()
    assert args.pop("ssl").verify_mode == ssl.CERT_NONE  # tls=skip-verify: encrypted, not verified
    assert args == {
        "user": "app",
        "password": "s3cr@t",
        "db": "orders",
        "host": "db.example",
        "port": 3307,
    }


def test_go_dsn_without_password_port_or_database() -> None:
    dsn = mysql.parse_go_dsn("root@tcp(127.0.0.1)/", WHERE)
    assert (dsn.user, dsn.password, dsn.host, dsn.port, dsn.database) == ("root", "", "127.0.0.1", 3306, "")
    assert dsn.connect_args()["db"] is None


def test_go_dsn_empty_password_and_ipv6() -> None:
    dsn = mysql.parse_go_dsn("root:@tcp([::1]:3306)/test", WHERE)
    assert (dsn.user, dsn.password, dsn.host, dsn.port) == ("root", "", "::1", 3306)


def test_go_dsn_without_credentials_or_address_uses_defaults() -> None:
    dsn = mysql.parse_go_dsn("/test", WHERE)
    assert dsn.connect_args() == {"user": "root", "password": "", "db": "test", "host": "127.0.0.1", "port": 3306}


def test_go_dsn_unix_socket() -> None:
    dsn = mysql.parse_go_dsn("u:p@unix(/var/run/mysqld/mysqld.sock)/db%2Fname", WHERE)
    assert dsn.unix_socket == "/var/run/mysqld/mysqld.sock"
    assert dsn.database == "db/name"  # the database name is path-unescaped, as the Go driver does
    args = dsn.connect_args()
    assert args["unix_socket"] == "/var/run/mysqld/mysqld.sock"
    assert "host" not in args and "port" not in args


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("root:@tcp(127.0.0.1:3306)", "missing '/'"),
        ("root:@tcp(127.0.0.1:3306/test", "invalid network address"),
        ("root:@pipe(x)/test", "unsupported network 'pipe'"),
        ("root:@tcp(127.0.0.1:port)/test", "invalid port 'port'"),
    ],
)
def test_go_dsn_errors_name_the_key_and_hide_the_text(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        mysql.parse_go_dsn(text.replace("root:", "root:hunter2"), WHERE)
    assert info.value.path == WHERE
    assert str(info.value).startswith(WHERE + ": connectionString is not a MySQL DSN")
    assert reason in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (pymysql.err.InterfaceError(0, "Not connected"), True),
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
        (pymysql.err.OperationalError(1927, "Connection was killed"), True),
        (pymysql.err.OperationalError(1045, "Access denied"), False),
        (pymysql.err.ProgrammingError(1064, "You have an error in your SQL syntax"), False),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), False),
    ],
)
def test_mysql_outage(exc: BaseException, outage: bool) -> None:
    assert mysql.outage(exc) is outage


PG_WHERE = "lock.pg.metadata.connectionString"


@pytest.mark.parametrize("url", ["postgres://u:p@db:5433/app?sslmode=disable", "postgresql://postgres@127.0.0.1/test"])
def test_pg_url_is_left_to_asyncpg(url: str) -> None:
    assert postgres.connect_args(url, PG_WHERE) == {"dsn": url}


def test_pg_key_value_form() -> None:
    text = "host=db.example port=5433 user=app password='a b' dbname=orders sslmode=require connect_timeout=3"
    args = postgres.connect_args(text + " pool_max_conns=8", PG_WHERE)
    assert args == {
        "host": "db.example",
        "port": 5433,
        "user": "app",
        "password": "a b",
        "database": "orders",
        "ssl": "require",
        "timeout": 3.0,
    }
    assert postgres.address(args) == "db.example:5433/orders"


def test_pg_address_hides_credentials() -> None:
    address = postgres.address(postgres.connect_args("postgres://u:secret@db:5433/app?password=x", PG_WHERE))
    assert address == "db:5433/app"


@pytest.mark.parametrize("text", ["host=db port=five", "host=db password", "host='db"])
def test_pg_bad_key_value_names_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        postgres.connect_args(text, PG_WHERE)
    assert info.value.path == PG_WHERE
    assert "connectionString is not a PostgreSQL URL or key=value list" in str(info.value)


@pytest.mark.parametrize(("status", "rows"), [("INSERT 0 3", 3), ("DELETE 2", 2), ("CREATE TABLE", 0)])
def test_pg_rows(status: str, rows: int) -> None:
    assert postgres.rows(status) == rows
