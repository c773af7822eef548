"""Who may connect to whom under the namespace's NetworkPolicies, by Kubernetes' rules: a pod
selected by no policy of a direction is open in that direction; one selected by any is open only
to what one of them allows; a connection needs the sender's egress and the receiver's ingress.

The participants are the workloads, a flow-run pod, a stranger (a pod nobody wrote a policy
for), an outsider (a pod of another namespace), kube-dns, the API server and an internet
address; every pair with an end in the namespace is tried on the ports below.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.helpers import NAMESPACE
from tests.k8s.rules import FLOW_RUN, Objects, pods


@dataclass(frozen=True)
class Peer:
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    namespace: str | None = NAMESPACE  # None: not a pod (an IP address outside the cluster)
    ip: str = "10.1.0.1"


KUBE_DNS = Peer("kube-dns", {"k8s-app": "kube-dns"}, "kube-system", "10.2.0.10")
API_SERVER = Peer("api-server", namespace=None, ip="10.0.0.1")
INTERNET = Peer("internet", namespace=None, ip="93.184.216.34")
STRANGER = Peer("stranger", {"app.kubernetes.io/name": "stranger"})
OUTSIDER = Peer("outsider", {"app": "other"}, "other-namespace", "10.3.0.5")
PORTS = [("UDP", 53), ("TCP", 53)] + [
    ("TCP", p) for p in (80, 443, 4200, 5000, 5432, 6443, 8080, 8333, 8888, 9333, 18333, 19333)
]
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def expected(senders: list[str]) -> set[tuple[str, str, str, int]]:
    """(sender, receiver, protocol, port) that must be open, and nothing else: every pod of the
    namespace resolves names; the rest is the table in infra/k8s/network-policies.yaml."""
    edges = {(s, "kube-dns", proto, 53) for s in senders for proto in ("UDP", "TCP")}
    edges |= {
        (FLOW_RUN, "seaweedfs", "TCP", 8333),
        (FLOW_RUN, "mlflow", "TCP", 5000),
        (FLOW_RUN, "prefect-server", "TCP", 4200),
        ("mlflow", "seaweedfs", "TCP", 8333),
        ("mlflow", "postgres", "TCP", 5432),
        ("prefect-server", "postgres", "TCP", 5432),
        ("prefect-worker", "prefect-server", "TCP", 4200),
    }
    # The API server is no pod: its address is all a policy can name, and the manifest allows
    # any address on its ports (README: narrow it), pods outside the namespace included.
    for dst in ("api-server", "internet", "kube-dns", "outsider"):
        edges |= {("prefect-worker", dst, "TCP", 443), ("prefect-worker", dst, "TCP", 6443)}
    return edges


def participants(objects: Objects) -> list[Peer]:
    out = []
    for i, (name, meta, _) in enumerate(pods(objects)):
        labels = meta.get("labels", {})
        if labels.get("app.kubernetes.io/name") == FLOW_RUN:
            name = FLOW_RUN
        out.append(Peer(name, labels, NAMESPACE, f"10.1.0.{i + 2}"))
    return out + [STRANGER, OUTSIDER, KUBE_DNS, API_SERVER, INTERNET]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and expr["key"] not in labels:
            return False
        if op == "DoesNotExist" and expr["key"] in labels:
            return False
    return True


def _peer_matches(rule_peer: dict[str, Any], other: Peer) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        ns_labels = {NAMESPACE_LABEL: other.namespace}
        if not _selects(rule_peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != NAMESPACE:
        return False
    return _selects(rule_peer.get("podSelector", {}), other.labels)


def _port_matches(ports: list[dict[str, Any]] | None, proto: str, port: int) -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == proto and p.get("port") in (port, None) for p in ports)


def _allowed(policies: Objects, me: Peer, other: Peer, proto: str, port: int, way: str) -> bool:
    """Whether ``me``'s policies let it send to (Egress) or receive from (Ingress) ``other``."""
    if me.namespace != NAMESPACE:
        return True  # not ours to police
    key, peers_key = ("egress", "to") if way == "Egress" else ("ingress", "from")
    mine = [
        p["spec"]
        for p in policies
        if _selects(p["spec"]["podSelector"], me.labels)
        and way in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not mine:
        return True
    for spec in mine:
        for rule in spec.get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(x, other) for x in peers)) and _port_matches(
                rule.get("ports"), proto, port
            ):
                return True
    return False


def open_edges(objects: Objects) -> set[tuple[str, str, str, int]]:
    policies = [d for d in objects if d["kind"] == "NetworkPolicy"]
    everyone = participants(objects)
    edges = set()
    for src in everyone:
        if src.namespace is None or src is KUBE_DNS:
            continue  # addresses outside the cluster, and kube-dns, only receive here
        for dst in everyone:
            for proto, port in PORTS:
                if dst is src or NAMESPACE not in (src.namespace, dst.namespace):
                    continue
                if _allowed(policies, src, dst, proto, port, "Egress") and _allowed(
                    policies, dst, src, proto, port, "Ingress"
                ):
                    edges.add((src.name, dst.name, proto, port))
    return edges


def connectivity(objects: Objects) -> list[str]:
    """Violations: connections open that should not be, and ones closed that should be open."""
    senders = [p.name for p in participants(objects) if p.namespace == NAMESPACE]
    want, got = expected(senders), open_edges(objects)
    extra = [f"open but not allowed: {e}" for e in sorted(got - want)]
    missing = [f"closed but needed: {e}" for e in sorted(want - got)]
    return extra + missing
