"""Is a connection allowed by a set of rendered NetworkPolicies? (networking.k8s.io/v1)

A pod is isolated in a direction when some policy of its namespace selects it and names that
direction in ``policyTypes``; an isolated pod allows what a rule of one of those policies
allows, and a connection needs both the source's egress and the destination's ingress. Named
ports resolve on the destination pod. ``ipBlock`` peers match addresses outside the cluster only:
what they mean for pod addresses is left to the CNI, so no conclusion here rests on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network
from typing import Any, Literal

Direction = Literal["Ingress", "Egress"]


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)
    """Container ports by name, for rules that name their port."""


@dataclass(frozen=True)
class External:
    address: str


Endpoint = Pod | External


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector's verdict on a label set (an empty selector selects everything)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        verdict = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not verdict:
            return False
    return True


def _types(spec: Mapping[str, Any]) -> list[str]:
    declared: list[str] | None = spec.get("policyTypes")
    if declared is not None:
        return declared
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


class Policies:
    """The NetworkPolicies of a rendering, and the labels of the namespaces it knows."""

    def __init__(
        self, docs: Iterable[Mapping[str, Any]], namespace_labels: Mapping[str, Mapping[str, str]]
    ) -> None:
        self._policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
        self._namespace_labels = namespace_labels

    def allows(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether ``source`` may open a connection to ``destination`` on ``port``."""
        target = destination if isinstance(destination, Pod) else None
        egress = not isinstance(source, Pod) or self._admits(
            source, "Egress", destination, port, protocol, target
        )
        ingress = not isinstance(destination, Pod) or self._admits(
            destination, "Ingress", source, port, protocol, target
        )
        return egress and ingress

    def isolating(self, pod: Pod, direction: Direction) -> list[Mapping[str, Any]]:
        """The policies that select ``pod`` for ``direction``."""
        return [
            p
            for p in self._policies
            if p["metadata"]["namespace"] == pod.namespace
            and selects(p["spec"]["podSelector"], pod.labels)
            and direction in _types(p["spec"])
        ]

    def _admits(
        self,
        pod: Pod,
        direction: Direction,
        peer: Endpoint,
        port: int,
        protocol: str,
        target: Pod | None,
    ) -> bool:
        policies = self.isolating(pod, direction)
        if not policies:
            return True
        peers_key, rules_key = ("from", "ingress") if direction == "Ingress" else ("to", "egress")
        for policy in policies:
            namespace = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(rules_key) or []:
                peers = rule.get(peers_key)
                if peers and not any(self._matches(p, namespace, peer) for p in peers):
                    continue
                ports = rule.get("ports")
                if ports and not any(_port_matches(p, port, protocol, target) for p in ports):
                    continue
                return True
        return False

    def _matches(self, peer: Mapping[str, Any], namespace: str, endpoint: Endpoint) -> bool:
        if "ipBlock" in peer:
            if not isinstance(endpoint, External):
                return False
            block, address = peer["ipBlock"], ip_address(endpoint.address)
            network = ip_network(block["cidr"])
            if address.version != network.version or address not in network:
                return False
            excepted = (ip_network(e) for e in block.get("except", []))
            return not any(address.version == e.version and address in e for e in excepted)
        if not isinstance(endpoint, Pod):
            return False
        if "namespaceSelector" in peer:
            labels = {
                "kubernetes.io/metadata.name": endpoint.namespace,
                **self._namespace_labels.get(endpoint.namespace, {}),
            }
            if not selects(peer["namespaceSelector"], labels):
                return False
        elif endpoint.namespace != namespace:
            return False
        return selects(peer.get("podSelector", {}), endpoint.labels)


def _port_matches(entry: Mapping[str, Any], port: int, protocol: str, target: Pod | None) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return target is not None and target.ports.get(wanted) == port
    end: int = entry.get("endPort", wanted)
    return bool(wanted <= port <= end)
