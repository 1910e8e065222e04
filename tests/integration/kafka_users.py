"""A stand-in for Strimzi's User Operator: a KafkaUser made real in Apache Kafka.

Strimzi's User Operator does not run here. What it does for a `scram-sha-512` user with `simple`
authorization is small and documented: a SCRAM-SHA-512 credential with a generated password (in a
Secret named like the user) and one Kafka ACL per resource and operation of `spec.authorization
.acls`, for the principal `User:<name>`. This does the same through the Admin API of a real broker
(confluent-kafka's, which has the SCRAM and ACL calls aiokafka lacks), so that the broker, not a
test, decides what each service may do.
"""

from __future__ import annotations

import secrets
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

SCRAM_ITERATIONS = 4096  # Strimzi's, and Kafka's minimum for SCRAM-SHA-512
TIMEOUT_S = 30

# Strimzi's names for ACL resource types and operations, as Kafka's enums.
RESOURCE_TYPES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
PATTERN_TYPES = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}


def acl_bindings(user: dict[str, Any]) -> list[AclBinding]:
    """The Kafka ACLs a KafkaUser's `simple` authorization stands for."""
    authorization = user["spec"].get("authorization") or {}
    if authorization.get("type") != "simple":
        return []
    principal = f"User:{user['metadata']['name']}"
    bindings = []
    for rule in authorization.get("acls") or []:
        resource = rule["resource"]
        operations = rule.get("operations") or [rule["operation"]]
        for operation in operations:
            bindings.append(
                AclBinding(
                    RESOURCE_TYPES[resource["type"]],
                    resource["name"],
                    PATTERN_TYPES[resource.get("patternType", "literal")],
                    principal,
                    rule.get("host", "*"),
                    AclOperation[operation.upper()],
                    AclPermissionType.ALLOW,
                )
            )
    return bindings


def apply_users(bootstrap_servers: str, users: list[dict[str, Any]]) -> dict[str, str]:
    """Create each user's SCRAM-SHA-512 credential and ACLs; return the passwords by user (what
    Strimzi writes to each user's Secret under `password`)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    passwords = {user["metadata"]["name"]: secrets.token_urlsafe(24) for user in users}
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, info, password.encode())
        for name, password in passwords.items()
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=TIMEOUT_S)
    bindings = [binding for user in users for binding in acl_bindings(user)]
    for future in admin.create_acls(bindings, request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)
    return passwords
