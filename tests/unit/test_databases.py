"""k8s/databases: the CloudNativePG Cluster, its Databases and the Secrets that k8s/sagas/order.yaml
names hold together (`kubectl apply -f k8s/databases/` gives every service a database it owns and
a URL to reach it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = ROOT / "k8s" / "databases"
SAGA = yaml.safe_load((ROOT / "k8s" / "sagas" / "order.yaml").read_text())
CNPG = "postgresql.cnpg.io/v1"

Obj = dict[str, Any]


def load() -> list[Obj]:
    return [
        doc
        for path in sorted(DIRECTORY.iterdir())
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


OBJECTS = load()
(CLUSTER,) = [o for o in OBJECTS if o["kind"] == "Cluster"]
DATABASES = [o for o in OBJECTS if o["kind"] == "Database"]
SECRETS = {o["metadata"]["name"]: o for o in OBJECTS if o["kind"] == "Secret"}
ROLES = {role["name"]: role for role in CLUSTER["spec"]["managed"]["roles"]}


def saga_databases() -> list[Obj]:
    """The `database` of every service of the Saga: orchestrator, initiator, steps."""
    spec = SAGA["spec"]
    services = [spec["orchestrator"], spec["initiator"], *spec["steps"]]
    return [service["database"] for service in services]


def secret_value(secret: Obj, key: str) -> str:
    assert "data" not in secret, "dev Secrets are written in stringData"
    value = secret["stringData"][key]
    assert isinstance(value, str)
    return value


def test_kubectl_apply_of_the_directory_takes_every_file() -> None:
    """`kubectl apply -f k8s/databases/` reads every .yaml there as objects: no kustomization, no
    other file kinds, every document an object with a name and no namespace (apply -n chooses)."""
    files = sorted(path.name for path in DIRECTORY.iterdir())
    assert files == ["cluster.yaml", "databases.yaml", "secrets.yaml"]
    for obj in OBJECTS:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys()
        assert obj["metadata"]["name"]
        assert "namespace" not in obj["metadata"]


def test_cluster_is_three_instances_with_the_services_roles() -> None:
    assert CLUSTER["apiVersion"] == CNPG
    assert CLUSTER["metadata"]["name"] == "sagaline-db"
    assert CLUSTER["spec"]["instances"] == 3
    assert CLUSTER["spec"]["storage"]["size"]
    assert set(ROLES) == {"order", "payment", "stock", "order_orchestrator"}
    for role in ROLES.values():
        assert role["ensure"] == "present" and role["login"] is True
        assert not role.get("superuser") and not role.get("createdb") and not role.get("createrole")
        assert role["passwordSecret"]["name"] in SECRETS


def test_four_databases_each_owned_by_a_managed_role() -> None:
    assert sorted(d["spec"]["name"] for d in DATABASES) == [
        "order_orchestratordb",
        "orderdb",
        "paymentdb",
        "stockdb",
    ]
    for database in DATABASES:
        assert database["apiVersion"] == CNPG
        assert database["spec"]["cluster"] == {"name": CLUSTER["metadata"]["name"]}
        assert database["spec"]["owner"] in ROLES
    assert len({d["spec"]["owner"] for d in DATABASES}) == 4  # one owner per database


@pytest.mark.parametrize("database", saga_databases(), ids=lambda d: d["secretName"])
def test_every_secret_the_saga_names_exists_with_its_key(database: Obj) -> None:
    secret = SECRETS[database["secretName"]]
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert secret_value(secret, database.get("secretKey", "uri"))


@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_each_uri_names_its_role_database_and_the_primary(secret: Obj) -> None:
    username = secret_value(secret, "username")
    password = secret_value(secret, "password")
    uri = urlsplit(secret_value(secret, "uri"))
    role = ROLES[username]  # basic-auth username = the role CloudNativePG manages
    assert role["passwordSecret"]["name"] == secret["metadata"]["name"]
    assert uri.scheme == "postgresql"
    assert (uri.username, uri.password) == (username, password)
    assert (uri.hostname, uri.port) == (f"{CLUSTER['metadata']['name']}-rw", 5432)
    (database,) = [d for d in DATABASES if d["spec"]["name"] == uri.path.lstrip("/")]
    assert database["spec"]["owner"] == username
    assert secret["metadata"]["labels"]["cnpg.io/reload"] == "true"


def test_secrets_are_valid_kubernetes_objects() -> None:
    for secret in SECRETS.values():
        kubernetes_validate.validate(secret, "1.30", strict=True)
