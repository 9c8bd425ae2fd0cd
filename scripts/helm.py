#!/usr/bin/env python3
"""Lint and render a Helm chart with the real Helm library (Helm v4 inside
PyPI's helm-sdkpy wheel: its shared object libhelm_sdkpy.so), through ctypes.
Python >= 3.9, standard library only. scripts/helm.sh installs the library and
runs this; see it for the environment.

Usage:
  helm.py lint CHART [-f VALUES.yaml ...] [--set K=V ...] [--set-string K=V ...]
               [--set-json K=JSON ...] [--strict] [--namespace NS]
  helm.py template CHART [-f VALUES.yaml ...] [--set K=V ...] [--set-string K=V ...]
               [--set-json K=JSON ...] [--namespace NS] [--release NAME]
               [--include-crds] [--no-hooks] [--skip-tests]
               [--kube-version vX.Y.Z] [--api-versions GROUP/VERSION ...]
  helm.py version

lint: prints Helm's lint messages; exit 0 when no message is an ERROR
  (WARNINGs fail only with --strict, as with the helm CLI), 1 otherwise, 2 on
  bad usage. The library reports each message's severity and path but mostly
  not its text (helm-sdkpy serialises most Go errors as {}), so when lint finds
  errors this renders the chart with the same values and prints Helm's error
  from that. helm-sdkpy's lint takes no values: with -f/--set, a copy of the
  chart whose values.yaml holds the coalesced values is linted.
template: prints the rendered manifests (multi-document YAML, as `helm
  template`) on stdout; on failure prints Helm's error on stderr and exits 1.

How template works: libhelm_sdkpy exports no client-only/dry-run render, only a
real install. So this runs that install (helm.sh/helm/v4 action.Install: CRDs
from crds/, values schema, rendering, ordering, hooks) against a minimal fake
Kubernetes API server on 127.0.0.1 inside this process, with Helm's in-memory
release storage, and prints the release's manifest (plus hooks, and crds/ with
--include-crds). Values files (-f) are parsed by Helm itself (each one is the
values.yaml of a throw-away chart installed the same way), merged like `helm
-f`, and --set is parsed like Helm's strvals.

Differences from the helm CLI: values reach the library as JSON, so --set
integers become float64 as values-file numbers always are (a large one renders
as 1e+06 where `helm template --set` would print 1000000); .Capabilities
reflect the fake server (Kubernetes v1.37.0 and its built-in API groups, plus
--api-versions and any custom kind the chart renders); `lookup` finds nothing,
as in `helm template`; --include-crds prints the top chart's crds/ only.
"""

from __future__ import annotations

# --------------------------------------------------------------------------
# The environment the Go runtime sees. A Go c-shared library copies the
# process environment when it is loaded, from the environment the process was
# started with: os.environ changes made by Python afterwards are invisible to
# it. So the settings Helm reads (HELM_DRIVER, HELM_*_HOME) are put in place by
# re-executing this script once with them, before the heavier imports.
# --------------------------------------------------------------------------

import os  # noqa: E402
import sys  # noqa: E402

REEXEC_MARK = "CHMIGRATE_HELM_REEXEC"


def _helm_home() -> str:
    # The same in both processes: exec keeps the pid.
    base = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, f"chmigrate-helm-home-{os.getpid()}")


def ensure_go_environment() -> None:
    if os.environ.get(REEXEC_MARK) == "1":
        if os.environ.get("HELM_DRIVER") != "memory":
            sys.exit("helm.py: HELM_DRIVER is not 'memory' after re-exec")
        return
    env = dict(os.environ)
    home = _helm_home()
    env.update({
        "HELM_DRIVER": "memory",  # releases in memory, not as Secrets in the (fake) cluster
        "HELM_CACHE_HOME": os.path.join(home, "cache"),
        "HELM_CONFIG_HOME": os.path.join(home, "config"),
        "HELM_DATA_HOME": os.path.join(home, "data"),
        "KUBECONFIG": os.devnull,  # never the user's cluster
        REEXEC_MARK: "1",
    })
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


if __name__ == "__main__":
    ensure_go_environment()

import argparse
import base64
import ctypes
import json
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LIB_ENV = "CHMIGRATE_HELM_LIB"
DEFAULT_KUBE_VERSION = "v1.37.0"  # Helm v4.3's default for `helm template` (client-go v0.37)
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


class HelmError(Exception):
    """An error whose text is Helm's (or ours, worded for the user)."""


# --------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------


class Lib:
    """libhelm_sdkpy.so (helm-sdkpy's Go shim around helm.sh/helm/v4). Every
    call returns int 0 on success, -1 (-2: release not found) on failure with
    the text in helm_sdkpy_last_error() (library-owned, per thread); result
    strings (char **out) are malloc'd and freed with helm_sdkpy_free."""

    def __init__(self, path: str):
        if not path or not os.path.isfile(path):
            raise HelmError(
                f"libhelm_sdkpy.so not found (set {LIB_ENV}; scripts/helm.sh installs it): {path!r}"
            )
        lib = ctypes.CDLL(path)  # CDLL releases the GIL during calls: the fake server runs meanwhile
        H = ctypes.c_ulonglong
        S = ctypes.c_char_p
        OUT = ctypes.POINTER(ctypes.c_void_p)
        sig = {
            "helm_sdkpy_config_create": ([S, S, S, S, ctypes.POINTER(H)], ctypes.c_int),
            "helm_sdkpy_config_destroy": ([H], None),
            "helm_sdkpy_lint": ([H, S, OUT], ctypes.c_int),
            "helm_sdkpy_install": ([H, S, S, S, S, S, OUT], ctypes.c_int),
            "helm_sdkpy_last_error": ([], ctypes.c_void_p),
            "helm_sdkpy_free": ([ctypes.c_void_p], None),
            "helm_sdkpy_version_string": ([], ctypes.c_void_p),
        }
        for name, (args, res) in sig.items():
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = res
        self.lib = lib
        self.lock = threading.Lock()  # the last error is per library, not per thread

    def _take(self, ptr: ctypes.c_void_p) -> str:
        if not ptr.value:
            return ""
        try:
            return ctypes.string_at(ptr.value).decode("utf-8", "replace")
        finally:
            self.lib.helm_sdkpy_free(ptr.value)

    def _error(self, what: str) -> HelmError:
        # The calling thread's error slot: owned by the library (never freed
        # here), valid until this thread's next call into it.
        p = self.lib.helm_sdkpy_last_error()
        if not p:
            return HelmError(f"{what} failed (no error text from the library)")
        return HelmError(ctypes.string_at(p).decode("utf-8", "replace"))

    def version(self) -> str:
        p = self.lib.helm_sdkpy_version_string()  # static; not freed
        return ctypes.string_at(p).decode() if p else "unknown"

    def config(self, namespace: str, kubeconfig: str | None) -> int:
        h = ctypes.c_ulonglong()
        with self.lock:
            rc = self.lib.helm_sdkpy_config_create(
                namespace.encode(),
                kubeconfig.encode() if kubeconfig else None,
                None,
                b"{}",
                ctypes.byref(h),
            )
            if rc != 0:
                raise self._error("configuration")
        return h.value

    def destroy(self, handle: int) -> None:
        self.lib.helm_sdkpy_config_destroy(handle)

    def lint(self, handle: int, chart: str) -> dict:
        out = ctypes.c_void_p()
        with self.lock:
            rc = self.lib.helm_sdkpy_lint(handle, chart.encode(), ctypes.byref(out))
            if rc != 0:
                raise self._error("lint")
        return json.loads(self._take(out) or "{}")

    def install(self, handle: int, release: str, chart: str, values: dict, options: dict) -> dict:
        out = ctypes.c_void_p()
        with self.lock:
            rc = self.lib.helm_sdkpy_install(
                handle,
                release.encode(),
                chart.encode(),
                json.dumps(values).encode() if values else b"",
                b"",
                json.dumps(options).encode(),
                ctypes.byref(out),
            )
            if rc != 0:
                raise self._error("install")
        return json.loads(self._take(out))


# --------------------------------------------------------------------------
# A minimal Kubernetes API server for Helm's install to talk to: legacy
# discovery, 404 for every object it did not create, creates echoed back
# (CRDs established at once, Jobs complete, Pods succeeded, so hooks finish).
# --------------------------------------------------------------------------

_NS, _CL = True, False
# (group/version, Kind, plural, namespaced): the built-in APIs of a current
# Kubernetes (what `helm template` assumes without a cluster).
BUILTIN = [
    ("v1", k, p, n)
    for k, p, n in [
        ("ConfigMap", "configmaps", _NS), ("Endpoints", "endpoints", _NS), ("Event", "events", _NS),
        ("LimitRange", "limitranges", _NS), ("Namespace", "namespaces", _CL), ("Node", "nodes", _CL),
        ("PersistentVolumeClaim", "persistentvolumeclaims", _NS),
        ("PersistentVolume", "persistentvolumes", _CL), ("Pod", "pods", _NS),
        ("PodTemplate", "podtemplates", _NS), ("ReplicationController", "replicationcontrollers", _NS),
        ("ResourceQuota", "resourcequotas", _NS), ("Secret", "secrets", _NS),
        ("ServiceAccount", "serviceaccounts", _NS), ("Service", "services", _NS),
    ]
] + [
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", _CL),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", _CL),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", _CL),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", _CL),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", _CL),
    ("apiregistration.k8s.io/v1", "APIService", "apiservices", _CL),
    ("apps/v1", "ControllerRevision", "controllerrevisions", _NS),
    ("apps/v1", "DaemonSet", "daemonsets", _NS),
    ("apps/v1", "Deployment", "deployments", _NS),
    ("apps/v1", "ReplicaSet", "replicasets", _NS),
    ("apps/v1", "StatefulSet", "statefulsets", _NS),
    ("authentication.k8s.io/v1", "TokenReview", "tokenreviews", _CL),
    ("authorization.k8s.io/v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", _NS),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", _CL),
    ("authorization.k8s.io/v1", "SubjectAccessReview", "subjectaccessreviews", _CL),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", _NS),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", _NS),
    ("batch/v1", "CronJob", "cronjobs", _NS),
    ("batch/v1", "Job", "jobs", _NS),
    ("certificates.k8s.io/v1", "CertificateSigningRequest", "certificatesigningrequests", _CL),
    ("coordination.k8s.io/v1", "Lease", "leases", _NS),
    ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", _NS),
    ("events.k8s.io/v1", "Event", "events", _NS),
    ("flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "flowschemas", _CL),
    ("flowcontrol.apiserver.k8s.io/v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", _CL),
    ("networking.k8s.io/v1", "Ingress", "ingresses", _NS),
    ("networking.k8s.io/v1", "IngressClass", "ingressclasses", _CL),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", _NS),
    ("networking.k8s.io/v1", "IPAddress", "ipaddresses", _CL),
    ("networking.k8s.io/v1", "ServiceCIDR", "servicecidrs", _CL),
    ("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", _CL),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", _NS),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", _CL),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", _CL),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", _NS),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", _NS),
    ("resource.k8s.io/v1", "DeviceClass", "deviceclasses", _CL),
    ("resource.k8s.io/v1", "ResourceClaim", "resourceclaims", _NS),
    ("resource.k8s.io/v1", "ResourceClaimTemplate", "resourceclaimtemplates", _NS),
    ("resource.k8s.io/v1", "ResourceSlice", "resourceslices", _CL),
    ("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", _CL),
    ("storage.k8s.io/v1", "CSIDriver", "csidrivers", _CL),
    ("storage.k8s.io/v1", "CSINode", "csinodes", _CL),
    ("storage.k8s.io/v1", "CSIStorageCapacity", "csistoragecapacities", _NS),
    ("storage.k8s.io/v1", "StorageClass", "storageclasses", _CL),
    ("storage.k8s.io/v1", "VolumeAttachment", "volumeattachments", _CL),
    ("storage.k8s.io/v1", "VolumeAttributesClass", "volumeattributesclasses", _CL),
]


def plural_of(kind: str) -> str:
    k = kind.lower()
    if k.endswith(("s", "x", "z", "ch", "sh")):
        return k + "es"
    if k.endswith("y") and len(k) > 1 and k[-2] not in "aeiou":
        return k[:-1] + "ies"
    return k + "s"


class FakeCluster:
    def __init__(self, kube_version: str, extra_api_versions: list[str]):
        self.kube_version = kube_version
        self.lock = threading.Lock()
        # gv -> {plural: (kind, namespaced)}
        self.resources: dict[str, dict[str, tuple[str, bool]]] = {}
        for gv, kind, plural, namespaced in BUILTIN:
            self.add_kind(gv, kind, plural, namespaced)
        for gv in extra_api_versions:
            self.resources.setdefault(gv, {})
        self.objects: dict[tuple, dict] = {}  # (gv, plural, ns, name) -> object
        self.stopped = threading.Event()
        self.seq = 0
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def setup(self):
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, code: int, obj) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                # Headers and body in one write (no Nagle / delayed-ACK stalls).
                self._headers_buffer.append(b"\r\n" + data)
                self.flush_headers()

            def do_GET(self):
                code, obj = cluster.handle("GET", self.path, b"", self.headers.get("Content-Type", ""))
                if code != "watch":
                    return self._send(code, obj)
                # A watch: the events now, then an open stream until the end.
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for ev in obj:
                        self.wfile.write(json.dumps(ev).encode() + b"\n")
                    self.wfile.flush()
                    cluster.stopped.wait(60)
                except OSError:
                    pass

            def do_DELETE(self):
                self._body()
                self._send(*cluster.handle("DELETE", self.path, b"", ""))

            def do_POST(self):
                body = self._body()
                self._send(*cluster.handle("POST", self.path, body, self.headers.get("Content-Type", "")))

            def do_PUT(self):
                body = self._body()
                self._send(*cluster.handle("PUT", self.path, body, self.headers.get("Content-Type", "")))

            def do_PATCH(self):
                body = self._body()
                self._send(*cluster.handle("PATCH", self.path, body, self.headers.get("Content-Type", "")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def kubeconfig(self, namespace: str) -> str:
        # helm-sdkpy takes kubeconfig YAML content as well as a path.
        return (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{self.port}\n"
            f"contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {json.dumps(namespace)}\n"
            "current-context: fake\n"
            "users:\n- name: fake\n  user:\n    token: fake\n"
        )

    def add_kind(self, gv: str, kind: str, plural: str, namespaced: bool) -> None:
        self.resources.setdefault(gv, {})[plural] = (kind, namespaced)

    # -- request handling -------------------------------------------------

    @staticmethod
    def _status(code: int, reason: str, message: str) -> tuple[int, dict]:
        return code, {
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success" if code < 400 else "Failure",
            "reason": reason, "message": message, "code": code,
        }

    def _discovery(self, path: str):
        if path == "/version":
            major, minor = self.kube_version.lstrip("v").split(".")[:2]
            return 200, {"major": major, "minor": minor, "gitVersion": self.kube_version,
                         "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                         "serverAddress": f"127.0.0.1:{self.port}"}]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in self.resources:
                if "/" in gv:
                    g, v = gv.split("/", 1)
                    groups.setdefault(g, []).append(v)
            out = []
            for g, vs in groups.items():
                vs = sorted(vs, key=_version_priority)
                out.append({"name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                            "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}
        if path == "/openapi/v3":
            # Only what kubectl's validator asks before trusting the server to
            # validate (the fieldValidation parameter on each kind's PATCH).
            return 200, {"paths": {("api/v1" if gv == "v1" else f"apis/{gv}"):
                                   {"serverRelativeURL": f"/openapi/v3/{'api/v1' if gv == 'v1' else 'apis/' + gv}"
                                                         f"?hash={len(kinds)}"}
                                   for gv, kinds in self.resources.items()}}
        m = re.fullmatch(r"/openapi/v3/(?:api/(v1)|apis/([^/]+)/([^/]+))", path)
        if m:
            gv = "v1" if m.group(1) else f"{m.group(2)}/{m.group(3)}"
            group, version = ("", "v1") if gv == "v1" else gv.split("/", 1)
            paths = {}
            for plural, (kind, namespaced) in self.resources.get(gv, {}).items():
                prefix = "/api/v1" if gv == "v1" else f"/apis/{gv}"
                ns = "/namespaces/{namespace}" if namespaced else ""
                paths[f"{prefix}{ns}/{plural}/{{name}}"] = {"patch": {
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}},
                }}
            return 200, {"openapi": "3.0.0", "info": {"title": "fake", "version": self.kube_version},
                         "paths": paths}
        m = re.fullmatch(r"/api/v1|/apis/([^/]+)/([^/]+)", path)
        if m:
            gv = "v1" if m.group(1) is None else f"{m.group(1)}/{m.group(2)}"
            if gv not in self.resources:
                return self._status(404, "NotFound", f"the server could not find {path}")
            res = []
            for plural, (kind, namespaced) in sorted(self.resources[gv].items()):
                res.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                            "kind": kind,
                            "verbs": ["create", "delete", "deletecollection", "get", "list",
                                      "patch", "update", "watch"]})
                res.append({"name": f"{plural}/status", "singularName": "", "namespaced": namespaced,
                            "kind": kind, "verbs": ["get", "patch", "update"]})
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                         "resources": res}
        return None

    def handle(self, method: str, raw_path: str, body: bytes, ctype: str) -> tuple:
        url = urlsplit(raw_path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        with self.lock:
            if method == "GET":
                d = self._discovery(path)
                if d is not None:
                    return d
            parts = path.strip("/").split("/")
            if parts[0] == "api" and len(parts) >= 2:
                gv, rest = parts[1], parts[2:]
            elif parts[0] == "apis" and len(parts) >= 3:
                gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
            else:
                return self._status(404, "NotFound", f"the server could not find {path}")
            ns = ""
            if len(rest) >= 3 and rest[0] == "namespaces":
                ns, rest = rest[1], rest[2:]
            if not rest:
                return self._status(404, "NotFound", path)
            plural, name = rest[0], rest[1] if len(rest) > 1 else ""
            kind = self.resources.get(gv, {}).get(plural, ("", True))[0]
            key = (gv, plural, ns, name)
            if method == "GET":
                if name:
                    obj = self.objects.get(key)
                    if obj is None:
                        return self._status(404, "NotFound", f'{plural} "{name}" not found')
                    return 200, obj
                items = [o for (g, p, n, nm), o in self.objects.items()
                         if g == gv and p == plural and (not ns or n == ns)
                         and _field_match(query.get("fieldSelector", [""])[0], nm, n)]
                if query.get("watch", ["0"])[0] in ("1", "true"):
                    events = [{"type": "ADDED", "object": o} for o in items]
                    if query.get("sendInitialEvents", ["false"])[0] == "true":
                        events.append({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": gv,
                            "metadata": {"resourceVersion": str(self.seq),
                                         "annotations": {"k8s.io/initial-events-end": "true"}}}})
                    return "watch", events
                return 200, {"kind": kind + "List", "apiVersion": gv,
                             "metadata": {"resourceVersion": str(self.seq)}, "items": items}
            if method == "DELETE":
                if self.objects.pop(key, None) is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                return self._status(200, "", "deleted")
            # POST / PUT / PATCH
            obj = None
            if "json" in ctype:
                try:
                    obj = json.loads(body or b"{}")
                except ValueError:
                    obj = None
            if not isinstance(obj, dict):
                # Protobuf (Helm's Secret release driver would send that); keep a stub.
                obj = {"apiVersion": gv, "kind": kind, "metadata": {"name": name or "object"}}
            if method == "PATCH":
                old = self.objects.get(key)
                if old is None:
                    return self._status(404, "NotFound", f'{plural} "{name}" not found')
                obj = old
            meta = obj.setdefault("metadata", {})
            name = name or meta.get("name") or (meta.get("generateName", "obj-") + uuid.uuid4().hex[:5])
            meta["name"] = name
            if ns:
                meta["namespace"] = ns
            key = (gv, plural, ns, name)
            if method == "POST" and key in self.objects:
                return self._status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            self.seq += 1
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(self.seq)
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            self._settle(gv, kind, obj)
            self.objects[key] = obj
            return (201 if method == "POST" else 200), obj

    def _settle(self, gv: str, kind: str, obj: dict) -> None:
        """Give a created object the status a healthy cluster would reach."""
        gen = obj["metadata"].get("generation", 1)
        if kind == "CustomResourceDefinition":
            spec = obj.get("spec", {})
            names = spec.get("names", {})
            for v in spec.get("versions", []) or [{"name": spec.get("version", "v1")}]:
                self.add_kind(f"{spec.get('group')}/{v.get('name')}", names.get("kind", ""),
                              names.get("plural") or plural_of(names.get("kind", "")),
                              spec.get("scope", "Namespaced") == "Namespaced")
            obj["status"] = {"acceptedNames": names, "storedVersions": [
                v.get("name") for v in spec.get("versions", []) if v.get("storage")],
                "conditions": [{"type": t, "status": "True", "reason": t, "message": "",
                                "lastTransitionTime": obj["metadata"]["creationTimestamp"]}
                               for t in ("NamesAccepted", "Established")]}
        elif kind == "Job":
            now = obj["metadata"]["creationTimestamp"]
            obj["status"] = {"succeeded": 1, "startTime": now, "completionTime": now,
                             "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                                            for t in ("SuccessCriteriaMet", "Complete")]}
        elif kind == "Pod":
            obj["status"] = {"phase": "Succeeded"}
        else:
            obj.setdefault("status", {})
            if isinstance(obj["status"], dict):
                obj["status"]["observedGeneration"] = gen


def _field_match(selector: str, name: str, namespace: str) -> bool:
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        v = v.lstrip("=")
        if k == "metadata.name" and v != name or k == "metadata.namespace" and v != namespace:
            return False
    return True


def _version_priority(v: str):
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, v)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


# --------------------------------------------------------------------------
# Values: -f files (parsed by Helm), merged like `helm -f`, then --set.
# --------------------------------------------------------------------------


def merge_maps(a: dict, b: dict) -> dict:
    """helm.sh/helm/v4/pkg/cli/values.mergeMaps: b over a, maps deeply."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
        else:
            out[k] = v
    return out


def coalesce(user: dict, chart: dict) -> dict:
    """User values over chart defaults; a user null removes the key (Helm's
    CoalesceValues, for lint's rewritten values.yaml)."""
    out = dict(chart)
    for k, v in user.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(v, out[k])
        else:
            out[k] = v
    return out


class StrvalsError(HelmError):
    pass


def _typed(val: str, as_string: bool):
    """strvals.typedVal."""
    if as_string:
        return val
    low = val.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "null":
        return None
    if val == "0":
        return 0
    if val and val[0] != "0" and re.fullmatch(r"[+-]?\d+", val):
        n = int(val)
        if -(2**63) <= n < 2**63:
            return n
    return val


def _split_top(s: str, seps: str) -> tuple[str, str, str]:
    """Read up to the first unescaped char in seps; returns (token, sep, rest).
    Backslash escapes the next character."""
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c in seps:
            return "".join(out), c, s[i + 1:]
        out.append(c)
        i += 1
    return "".join(out), "", ""


def _parse_value(rest: str, as_string: bool, as_json: bool):
    """A value up to the next top-level ','; returns (value, rest)."""
    if as_json:
        # --set-json: the value is JSON up to a ',' outside brackets/strings.
        dec = json.JSONDecoder()
        try:
            v, end = dec.raw_decode(rest)
        except ValueError as e:
            raise StrvalsError(f"failed parsing --set-json data {rest!r}: {e}") from None
        rest = rest[end:]
        if rest and rest[0] != ",":
            raise StrvalsError(f"unexpected data after JSON value: {rest!r}")
        return v, rest[1:]
    if rest.startswith("{") and not as_string:
        items, rest2 = [], rest[1:]
        while True:
            tok, sep, rest2 = _split_top(rest2, ",}")
            if sep == "":
                raise StrvalsError(f"list must terminate with '}}': {rest!r}")
            if tok != "" or sep == ",":
                items.append(_typed(tok, False))
            if sep == "}":
                break
        if rest2 and rest2[0] != ",":
            raise StrvalsError(f"unexpected data after list: {rest2!r}")
        return items, rest2[1:]
    tok, _sep, rest2 = _split_top(rest, ",")
    return _typed(tok, as_string), rest2


def _set_path(data: dict, path: list, value) -> None:
    cur = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(part, int):
            if not isinstance(cur, list):
                raise StrvalsError(f"cannot index non-list with [{part}]")
            while len(cur) <= part:
                cur.append(None)
            if last:
                cur[part] = value
                return
            nxt = path[i + 1]
            if not isinstance(cur[part], (dict, list)) or isinstance(nxt, int) != isinstance(cur[part], list):
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
        else:
            if last:
                cur[part] = value
                return
            nxt = path[i + 1]
            want = list if isinstance(nxt, int) else dict
            if not isinstance(cur.get(part), want):
                cur[part] = want()
            cur = cur[part]


def parse_set(data: dict, expr: str, as_string: bool = False, as_json: bool = False) -> None:
    """Helm's strvals (ParseInto / ParseIntoString / ParseJSON), for the
    forms used in practice: a.b=c, a[0]=x, a[0].b=x, k={x,y}, several
    comma-separated, backslash escapes, typed values (bools, ints, null)."""
    rest = expr
    while rest:
        path: list = []
        while True:
            tok, sep, rest = _split_top(rest, ".=[,")
            if sep == "[":
                idx, sep2, rest = _split_top(rest, "]")
                if tok:
                    path.append(tok)
                if not sep2 or not idx.isdigit():
                    raise StrvalsError(f"invalid index in {expr!r}")
                path.append(int(idx))
                if rest.startswith("="):
                    rest = rest[1:]
                    break
                if rest.startswith("."):
                    rest = rest[1:]
                    continue
                if rest.startswith("["):
                    continue
                raise StrvalsError(f"key {expr!r} has no value")
            if sep == ".":
                path.append(tok)
                continue
            if sep == "=":
                path.append(tok)
                break
            raise StrvalsError(f'key "{tok}" has no value' if tok else f"invalid --set {expr!r}")
        value, rest = _parse_value(rest, as_string, as_json)
        _set_path(data, path, value)


class Session:
    """One loaded library, a fake cluster per render."""

    def __init__(self, args):
        self.lib = Lib(os.environ.get(LIB_ENV, ""))
        self.kube_version = getattr(args, "kube_version", None) or DEFAULT_KUBE_VERSION
        self.api_versions = getattr(args, "api_versions", None) or []
        os.makedirs(_helm_home(), exist_ok=True)
        self.scratch = tempfile.mkdtemp(prefix="run-", dir=_helm_home())

    def close(self):
        shutil.rmtree(self.scratch, ignore_errors=True)

    def install(self, chart: str, release: str, namespace: str, values: dict) -> dict:
        """Helm's install against a fresh fake cluster; the release as JSON."""
        cluster = FakeCluster(self.kube_version, self.api_versions)
        try:
            seen = set()
            while True:
                handle = self.lib.config(namespace, cluster.kubeconfig(namespace))
                try:
                    return self.lib.install(handle, release, chart, values, {
                        "create_namespace": False,
                        "wait": False,
                        "timeout_seconds": 120,
                        "wait_for_jobs": False,
                        "server_side_apply": "false",
                        "force_conflicts": False,
                        "disable_openapi_validation": True,
                        "skip_schema_validation": False,
                        "rollback_on_failure": False,
                        "take_ownership": False,
                    })
                except HelmError as e:
                    # A kind the fake does not serve (a custom resource whose CRD
                    # is installed elsewhere): serve it and try again, as
                    # `helm template` renders any kind.
                    missing = set(re.findall(r'no matches for kind "([^"]+)" in version "([^"]+)"',
                                             str(e))) - seen
                    if not missing:
                        raise
                    seen |= missing
                    for kind, gv in missing:
                        cluster.add_kind(gv, kind, plural_of(kind), True)
                finally:
                    self.lib.destroy(handle)
        finally:
            cluster.close()

    def parse_values_file(self, path: str) -> dict:
        """A YAML values file parsed by Helm (the values.yaml of a throw-away chart)."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise HelmError(f"open {path}: {e.strerror}") from None
        d = tempfile.mkdtemp(prefix="values-", dir=self.scratch)
        chart = os.path.join(d, "values-file")
        os.makedirs(os.path.join(chart, "templates"))
        with open(os.path.join(chart, "Chart.yaml"), "w") as f:
            f.write("apiVersion: v2\nname: values-file\nversion: 0.0.0\n")
        with open(os.path.join(chart, "values.yaml"), "wb") as f:
            f.write(data)
        try:
            rel = self.install(chart, "values-file", "default", {})
        except HelmError as e:
            msg = str(e).replace("install failed: ", "").replace("failed to load chart: ", "")
            raise HelmError(f"failed to parse {path}: {msg.replace('values.yaml', path)}") from None
        finally:
            shutil.rmtree(d, ignore_errors=True)
        vals = (rel.get("chart") or {}).get("values") or {}
        if not isinstance(vals, dict):
            raise HelmError(f"failed to parse {path}: not a map of values")
        return vals

    def user_values(self, args) -> dict:
        vals: dict = {}
        for path in args.values or []:
            vals = merge_maps(vals, self.parse_values_file(path))
        for kind, exprs in (("json", args.set_json), ("", args.set), ("string", args.set_string)):
            for expr in exprs or []:
                try:
                    parse_set(vals, expr, as_string=kind == "string", as_json=kind == "json")
                except StrvalsError as e:
                    flag = {"json": "--set-json", "": "--set", "string": "--set-string"}[kind]
                    raise HelmError(f"failed parsing {flag} data: {e}") from None
        return vals


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


def clean_error(msg: str) -> str:
    for p in ("install failed: ",):
        if msg.startswith(p):
            msg = msg[len(p):]
    return msg


def render(sess: Session, args, vals: dict) -> str:
    chart = os.path.abspath(args.chart)
    rel = sess.install(chart, args.release, args.namespace, vals)
    manifest = rel.get("manifest") or ""
    if args.include_crds:
        ch = rel.get("chart") or {}
        name = (ch.get("metadata") or {}).get("name", os.path.basename(chart))
        crds = []
        for f in ch.get("files") or []:
            fname = f.get("name", "")
            if fname.startswith("crds/") and fname.endswith((".yaml", ".yml", ".json")):
                data = base64.b64decode(f.get("data") or "").decode("utf-8", "replace")
                crds.append(f"---\n# Source: {name}/{fname}\n{data}\n")
        manifest = "".join(crds) + manifest
    out = [manifest.strip() + "\n"]
    if not args.no_hooks:
        for h in rel.get("hooks") or []:
            if args.skip_tests and "test" in (h.get("events") or []):
                continue
            out.append(f"---\n# Source: {h.get('path')}\n{h.get('manifest')}\n")
    return "".join(out)


def cmd_template(args) -> int:
    sess = Session(args)
    try:
        vals = sess.user_values(args)
        sys.stdout.write(render(sess, args, vals))
        return 0
    except HelmError as e:
        print(f"Error: {clean_error(str(e))}", file=sys.stderr)
        return 1
    finally:
        sess.close()


def read_chart_values(sess: Session, chart: str) -> dict:
    path = os.path.join(chart, "values.yaml")
    if not os.path.exists(path):
        return {}
    return sess.parse_values_file(path)


def cmd_lint(args) -> int:
    sess = Session(args)
    chart = os.path.abspath(args.chart)
    print(f"==> Linting {args.chart}")
    try:
        try:
            vals = sess.user_values(args)
            target = chart
            if vals:
                # helm-sdkpy's lint takes no values: lint a copy whose values.yaml
                # is the chart's values with the user's over them (what Helm's
                # lint coalesces -f/--set into), as JSON (valid YAML).
                copy = os.path.join(tempfile.mkdtemp(prefix="lint-", dir=sess.scratch),
                                    os.path.basename(chart))
                shutil.copytree(chart, copy, symlinks=True)
                merged = coalesce(vals, read_chart_values(sess, chart))
                with open(os.path.join(copy, "values.yaml"), "w") as f:
                    json.dump(merged, f, indent=2)
                    f.write("\n")
                target = copy
            handle = sess.lib.config(args.namespace, None)
            try:
                res = sess.lib.lint(handle, target)
            finally:
                sess.lib.destroy(handle)
        except HelmError as e:
            print(f"[ERROR] {clean_error(str(e))}\n\nError: 1 chart(s) linted, 1 chart(s) failed")
            return 1
        msgs = res.get("Messages") or []
        worst = max([m.get("Severity", 0) for m in msgs] + [0])
        failed = worst >= 3 or (args.strict and worst >= 2)
        icon = has_top_level_key(os.path.join(chart, "Chart.yaml"), "icon")
        for m in msgs:
            sev = SEVERITY.get(m.get("Severity", 0), str(m.get("Severity")))
            err = m.get("Err")
            # Most Go errors serialise as {} (text lost); a few as a string or fields.
            text = err if isinstance(err, str) else json.dumps(err) if err else ""
            if not text:
                if sev == "INFO" and m.get("Path") == "Chart.yaml" and not icon:
                    text = "icon is recommended"
                else:
                    text = "(helm-sdkpy does not pass on the text; see below)" if sev == "ERROR" \
                        else "(helm-sdkpy does not pass on the text)"
            print(f"[{sev}] {m.get('Path', '')}: {text}")
        if worst >= 3:
            # The text of the errors: render with the same values.
            try:
                rargs = argparse.Namespace(chart=target, release="release-name",
                                           namespace=args.namespace, include_crds=False,
                                           no_hooks=False, skip_tests=False)
                render(sess, rargs, {})
                print("\nRendering the chart with these values succeeds, so the error is a lint-only rule"
                      " (e.g. YAML structure, namespaces, Chart.yaml fields).")
            except HelmError as e:
                msg = clean_error(str(e))
                if target != chart:
                    msg = msg.replace(target, args.chart)
                msg = "\n    ".join(msg.rstrip().splitlines())
                print(f"\nHelm's error when rendering the chart with these values:\n    {msg}")
        print()
        if failed:
            print("Error: 1 chart(s) linted, 1 chart(s) failed")
            return 1
        print("1 chart(s) linted, 0 chart(s) failed")
        return 0
    finally:
        sess.close()


def has_top_level_key(path: str, key: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any(re.match(rf"{re.escape(key)}\s*:\s*\S", line) for line in f)
    except OSError:
        return False


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="helm.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("chart", metavar="CHART_DIR")
        sp.add_argument("-f", "--values", action="append", metavar="FILE",
                        help="values YAML file (repeatable; later ones win)")
        sp.add_argument("--set", action="append", metavar="K=V", help="as helm --set (repeatable)")
        sp.add_argument("--set-string", action="append", metavar="K=V", help="as helm --set-string")
        sp.add_argument("--set-json", action="append", metavar="K=JSON", help="as helm --set-json")
        sp.add_argument("-n", "--namespace", default="default")

    lp = sub.add_parser("lint", help="helm lint")
    common(lp)
    lp.add_argument("--strict", action="store_true", help="fail on WARNING messages too")
    tp = sub.add_parser("template", help="helm template")
    common(tp)
    tp.add_argument("--release", "--name", dest="release", default="release-name")
    tp.add_argument("--include-crds", action="store_true", help="also print the chart's crds/ files")
    tp.add_argument("--no-hooks", action="store_true", help="leave hooks out")
    tp.add_argument("--skip-tests", action="store_true", help="leave test hooks out")
    tp.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION,
                    help=f"Kubernetes version for .Capabilities (default {DEFAULT_KUBE_VERSION})")
    tp.add_argument("-a", "--api-versions", action="append", metavar="GROUP/VERSION",
                    help="extra API version for .Capabilities.APIVersions")
    sub.add_parser("version", help="the library's version")
    args = p.parse_args(argv)
    if args.cmd == "version":
        print(Lib(os.environ.get(LIB_ENV, "")).version())
        return 0
    if not os.path.isdir(args.chart):
        print(f"Error: chart directory {args.chart!r} not found", file=sys.stderr)
        return 2 if args.cmd == "lint" else 1
    if args.cmd == "template":
        if not re.fullmatch(r"v?\d+\.\d+(\.\d+)?", args.kube_version):
            print(f"Error: invalid --kube-version {args.kube_version!r}", file=sys.stderr)
            return 1
        parts = args.kube_version.lstrip("v").split(".")
        args.kube_version = "v" + ".".join((parts + ["0"])[:3])
        return cmd_template(args)
    return cmd_lint(args)


def cleanup_home() -> None:
    shutil.rmtree(_helm_home(), ignore_errors=True)


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except HelmError as e:
        print(f"Error: {e}", file=sys.stderr)
        code = 1
    finally:
        cleanup_home()
    sys.exit(code)
