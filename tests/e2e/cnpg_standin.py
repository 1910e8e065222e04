"""A stand-in for CloudNativePG's operator (it cannot run here): what `k8s/databases/` asks of it,
done on the embedded PostgreSQL server the tests start, read from the API server like the real
operator reads it.

- each `Cluster`'s `managed.roles` become login roles (`ensure: absent` drops nothing here), with
  the password of their `passwordSecret` (the server trusts local connections, so the password
  is not checked: what is checked is that the role exists, logs in and owns its database);
- each `Database` becomes a database owned by its `owner`;
- the status says what CloudNativePG's would (the Cluster healthy, the Database applied).

`database_url()` then gives a service the URL its pod would get: the `uri` of the Secret its Saga
names, with CloudNativePG's `<cluster>-rw` Service replaced by the local server's address.
"""

from __future__ import annotations

import base64
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.e2e.support import Cluster, get, items

Body = dict[str, Any]
HEALTHY = "Cluster in healthy state"


def _secret(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    data = get(cluster, "secret", name, "-n", namespace).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def provision(cluster: Cluster, namespace: str, server_url: str) -> list[str]:
    """Roles and databases of every Cluster and Database in `namespace`; returns what it made."""
    made: list[str] = []
    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as db:
        for pg_cluster in items(cluster, "clusters.postgresql.cnpg.io", namespace):
            for role in (pg_cluster["spec"].get("managed") or {}).get("roles") or []:
                if role.get("ensure", "present") != "present":
                    continue
                exists = db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role["name"],))
                if exists.fetchone():
                    continue
                password = None
                if role.get("passwordSecret"):
                    secret = _secret(cluster, namespace, role["passwordSecret"]["name"])
                    assert secret.get("username", role["name"]) == role["name"], (
                        f"the Secret {role['passwordSecret']['name']} names user "
                        f"{secret.get('username')}, not the role {role['name']}"
                    )
                    password = secret.get("password")
                statement = sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
                    sql.Identifier(role["name"]),
                    sql.SQL("LOGIN" if role.get("login") else "NOLOGIN"),
                    sql.Literal(password),
                )
                db.execute(statement)
                made.append(f"role {role['name']}")
            instances = pg_cluster["spec"].get("instances", 1)
            status = {"phase": HEALTHY, "instances": instances, "readyInstances": instances}
            _patch_status(cluster, namespace, "clusters.postgresql.cnpg.io", pg_cluster, status)
        for database in items(cluster, "databases.postgresql.cnpg.io", namespace):
            spec = database["spec"]
            if spec.get("ensure", "present") != "present":
                continue
            exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (spec["name"],))
            if not exists.fetchone():
                db.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(spec["name"]), sql.Identifier(spec["owner"])
                    )
                )
                made.append(f"database {spec['name']}")
            generation = database["metadata"].get("generation")
            status = {"applied": True, "observedGeneration": generation}
            _patch_status(cluster, namespace, "databases.postgresql.cnpg.io", database, status)
    return made


def _patch_status(cluster: Cluster, namespace: str, kind: str, obj: Body, status: Body) -> None:
    import json

    cluster.kubectl(
        "patch",
        kind,
        obj["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def database_url(
    cluster: Cluster, namespace: str, secret_name: str, secret_key: str, server_url: str
) -> str:
    """The Secret's URL (what the pod gets as DATABASE_URL), pointed at the local server."""
    uri = _secret(cluster, namespace, secret_name)[secret_key]
    server = make_url(server_url)
    return (
        make_url(uri).set(host=server.host, port=server.port).render_as_string(hide_password=False)
    )
