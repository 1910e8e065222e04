"""A Saga's Strimzi KafkaTopics: the operator applies them, `render-topics` writes them to
`k8s/topics/`."""

from __future__ import annotations

import yaml

from sagaline.domain.definition import SagaDefinition
from sagaline_operator.manifests.common import STRIMZI_CLUSTER, Body, object_metadata, saga_labels


def kafka_topics(
    definition: SagaDefinition,
    *,
    api_version: str = "kafka.strimzi.io/v1beta2",
    namespace: str | None = None,
) -> list[Body]:
    """The eleven Strimzi KafkaTopics (for two steps), named like the topics they hold."""
    kafka = definition.spec.kafka
    labels = {**saga_labels(definition.name), STRIMZI_CLUSTER: kafka.cluster}
    return [
        {
            "apiVersion": api_version,
            "kind": "KafkaTopic",
            "metadata": object_metadata(topic, namespace, dict(labels)),
            "spec": {
                "topicName": topic,
                "partitions": kafka.partitions,
                "replicas": kafka.replicas,
                "config": {
                    "min.insync.replicas": kafka.effective_min_insync_replicas,
                    "retention.ms": kafka.retention_ms,
                },
            },
        }
        for topic in definition.topics()
    ]


def render_topics(definition: SagaDefinition, api_version: str) -> dict[str, str]:
    """`k8s/topics/`: one YAML file per KafkaTopic, by file name."""
    header = f"# Generated from the Saga {definition.name!r} by `python -m sagaline_operator "
    header += "render-topics`: do not edit.\n"
    return {
        f"{topic['metadata']['name']}.yaml": header + yaml.safe_dump(topic, sort_keys=False)
        for topic in kafka_topics(definition, api_version=api_version)
    }
