"""A real, throw-away Kubernetes control plane (etcd + kube-apiserver) for the e2e tests.

No controller-manager and no scheduler run: there are no pods, no namespace finalization,
no garbage collection of owned objects and no service-account token controller. What works:
every API the apiserver itself serves (CRDs, CEL validation, defaulting, RBAC, TokenRequest,
events, leases, audit logging).

Usage::

    with ControlPlane() as cp:
        cp.kubectl("get", "healthmonitors", "-A")
        env = cp.env()              # os.environ + KUBECONFIG, for starting the operator
        cp.audit_events(resource="healthmonitors", subresource="status", verb="patch")

Binaries come from ``scripts/build-control-plane.sh`` (built once, cached under
``~/.cache/downtime-operator/bin``). Set ``DOWNTIME_E2E_KEEP=1`` to keep the work directory
(certificates, logs, audit log, etcd data) after the run; ``DOWNTIME_KUBECTL`` picks the kubectl
binary.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
CRDS_DIR = REPO_ROOT / "crds"

# Requests on these resources are written to the audit log (one JSON line per request).
AUDITED_RESOURCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "monitoring.gatewayz.ai",
        (
            "healthmonitors",
            "healthmonitors/status",
            "downtimeincidents",
            "downtimeincidents/status",
            "notificationchannels",
            "notificationchannels/status",
        ),
    ),
    ("", ("events",)),
    ("events.k8s.io", ("events",)),
    # What an incident's Kubernetes context reads (its cost and its RBAC are checked).
    ("", ("pods", "services")),
    ("apps", ("replicasets", "deployments", "statefulsets")),
    ("discovery.k8s.io", ("endpointslices",)),
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or used."""


class ApiError(ControlPlaneError):
    """A REST call to the apiserver answered with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {body[:2000]}")
        self.status = status
        self.body = body


class KubectlError(subprocess.CalledProcessError):
    """A kubectl command failed; str() includes its stdout and stderr."""

    def __str__(self) -> str:
        return (
            f"{' '.join(map(str, self.cmd))!s} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the test process dies (Linux), and own session."""
    os.setsid()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a text file ('' when missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def build_binaries(script: Path = BUILD_SCRIPT) -> tuple[Path, Path]:
    """Run the (cached, idempotent) build script; return (kube-apiserver, etcd) paths."""
    if not script.is_file():
        raise ControlPlaneError(f"build script not found: {script}")
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3 * 3600,
        cwd=REPO_ROOT,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{script} failed with {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    found: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key in ("KUBE_APISERVER", "ETCD"):
            found[key] = Path(value)
    for key in ("KUBE_APISERVER", "ETCD"):
        path = found.get(key)
        if path is None or not os.access(path, os.X_OK):
            raise ControlPlaneError(f"{script} did not produce an executable {key}: {proc.stdout}")
    return found["KUBE_APISERVER"], found["ETCD"]


def find_kubectl() -> str:
    """The kubectl to use: ``DOWNTIME_KUBECTL``, else the newest bundled client, else PATH.

    /usr/bin/kubectl may be Google Cloud SDK's version dispatcher. It only switches to a
    bundled ``kubectl.1.NN`` whose version matches the server; for a newer server (ours is
    v1.34) it silently runs its own built-in client (v1.32), outside the supported +/-1
    skew. So when ``kubectl.1.NN`` siblings exist, use the newest one directly.
    """
    override = os.environ.get("DOWNTIME_KUBECTL")
    if override:
        return override
    found = shutil.which("kubectl")
    if found is None:
        raise ControlPlaneError("kubectl not found on PATH (set DOWNTIME_KUBECTL)")
    real = Path(found).resolve()
    bundled: list[tuple[int, Path]] = []
    for sibling in real.parent.glob("kubectl.1.*"):
        minor = sibling.name.removeprefix("kubectl.1.")
        if minor.isdigit() and os.access(sibling, os.X_OK):
            bundled.append((int(minor), sibling))
    if bundled:
        return str(max(bundled)[1])
    return found


class ControlPlane:
    """etcd + kube-apiserver on loopback ports, with the CRDs applied. A context manager.

    Attributes (valid after start()):
      workdir       temp dir holding everything below
      server        https://127.0.0.1:<port>
      ca_file       CA certificate (PEM) that signed the serving certificate
      admin_token   bearer token of user ``admin`` in group ``system:masters``
      kubeconfig    kubeconfig file for the admin (server, CA data, token)
      audit_log     JSON-lines audit log (requests on AUDITED_RESOURCES)
      etcd_url      http://127.0.0.1:<port>
      apiserver_log, etcd_log  process logs
    """

    def __init__(
        self,
        *,
        crd_paths: Sequence[Path] = (CRDS_DIR,),
        startup_timeout: float = 60.0,
        audit_level: str = "Metadata",
        keep_workdir: bool | None = None,
    ) -> None:
        self.crd_paths = list(crd_paths)
        self.startup_timeout = startup_timeout
        self.audit_level = audit_level
        self.keep_workdir = (
            os.environ.get("DOWNTIME_E2E_KEEP", "") not in ("", "0")
            if keep_workdir is None
            else keep_workdir
        )
        self.kubectl_binary = find_kubectl()
        self.workdir = Path()
        self.server = ""
        self.ca_file = Path()
        self.admin_token = ""
        self.kubeconfig = Path()
        self.audit_log = Path()
        self.etcd_url = ""
        self.apiserver_log = Path()
        self.etcd_log = Path()
        self.timings: dict[str, float] = {}
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._log_files: list[IO[bytes]] = []

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        apiserver_bin, etcd_bin = build_binaries()
        self.timings["build"] = time.monotonic() - t0
        self.workdir = Path(tempfile.mkdtemp(prefix="downtime-e2e-"))
        try:
            t1 = time.monotonic()
            self._write_certs()
            self.timings["certs"] = time.monotonic() - t1
            t1 = time.monotonic()
            self._start_etcd(etcd_bin)
            self._start_apiserver(apiserver_bin)
            self._wait_ready()
            self.timings["apiserver"] = time.monotonic() - t1
            t1 = time.monotonic()
            self.apply_crds()
            self.timings["crds"] = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop apiserver then etcd (SIGTERM, SIGKILL after 10 s) and remove the workdir."""
        for proc in (self._apiserver, self._etcd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._apiserver = self._etcd = None
        for f in self._log_files:
            f.close()
        self._log_files.clear()
        if self.workdir != Path() and self.workdir.exists() and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def diagnostics(self, lines: int = 60) -> str:
        """Tails of the etcd and apiserver logs, for failure messages."""
        return (
            f"--- etcd log ({self.etcd_log}) ---\n{tail(self.etcd_log, lines)}\n"
            f"--- kube-apiserver log ({self.apiserver_log}) ---\n"
            f"{tail(self.apiserver_log, lines)}"
        )

    # ----------------------------------------------------------------- client helpers

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ plus KUBECONFIG (and a private kubectl cache dir) for child processes."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.workdir / "kubecache")
        env.update(extra)
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig <admin> *args``; raise KubectlError when check fails."""
        cmd = [
            self.kubectl_binary,
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            "--cache-dir",
            str(self.workdir / "kubecache"),
            *args,
        ]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl_json(self, *args: str) -> Any:
        """``kubectl <args> -o json``, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply_crds(self) -> None:
        """kubectl apply the CRDs and wait until they are Established."""
        names: list[str] = []
        for path in self.crd_paths:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
            for file in files:
                for doc in yaml.safe_load_all(file.read_text()):
                    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                        names.append(f"crd/{doc['metadata']['name']}")
        if names:
            self.kubectl("wait", "--for", "condition=established", "--timeout", "60s", *names)
        # Discovery of the new kinds can lag Established by a moment.
        deadline = time.monotonic() + 30
        while True:
            proc = self.kubectl(
                "api-resources", "--api-group", "monitoring.gatewayz.ai", check=False
            )
            if proc.returncode == 0 and all(
                f"{plural} " in proc.stdout
                for plural in ("healthmonitors", "downtimeincidents", "notificationchannels")
            ):
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRDs not discoverable: {proc.stdout}{proc.stderr}")
            time.sleep(0.2)

    def write_kubeconfig(self, path: Path, token: str, user: str = "user") -> Path:
        """Write a kubeconfig for another bearer token (e.g. from ``kubectl create token``)."""
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the apiserver's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def request(self, path: str, *, token: str | None = None, timeout: float = 5.0) -> str:
        """GET a raw API path with the admin (or given) token; returns the body as text."""
        req = urllib.request.Request(
            self.server + path,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode()

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        token: str | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """One REST call with the admin (or given) token; JSON in, JSON out. Faster than kubectl.

        ``cp.api("PATCH", path, {...}, content_type="application/merge-patch+json")``.
        Raises ApiError (with .status and .body) on a non-2xx answer.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {token or self.admin_token}",
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
                raw: bytes = resp.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            raise ApiError(method, path, err.code, text) from None
        return json.loads(raw) if raw.strip() else None

    def apply(
        self, manifest: dict[str, Any] | str, *, namespace: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of one manifest (a dict, or YAML text with any documents)."""
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        args = ["apply", "-f", "-"]
        if namespace is not None:
            args += ["-n", namespace]
        return self.kubectl(*args, input=text, check=check)

    # ----------------------------------------------------------------- audit log

    def audit_events(
        self,
        *,
        resource: str | None = None,
        subresource: str | None = None,
        verb: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        username: str | None = None,
    ) -> list[dict[str, Any]]:
        """Parsed audit events (one per request, stage ResponseComplete), optionally filtered.

        ``subresource=""`` selects requests on the main resource only. Audit lines are written
        right after the response, so poll briefly before asserting on the very latest requests.
        """
        events: list[dict[str, Any]] = []
        for event in self._read_audit_log():
            ref = event.get("objectRef") or {}
            if resource is not None and ref.get("resource") != resource:
                continue
            if subresource is not None and ref.get("subresource", "") != subresource:
                continue
            if verb is not None and event.get("verb") != verb:
                continue
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            if name is not None and ref.get("name") != name:
                continue
            if username is not None and (event.get("user") or {}).get("username") != username:
                continue
            events.append(event)
        return events

    def _read_audit_log(self) -> Iterator[dict[str, Any]]:
        try:
            text = self.audit_log.read_text(errors="replace")
        except FileNotFoundError:
            return
        for raw in text.splitlines():
            line = raw.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written
            if event.get("stage") == "ResponseComplete":
                yield event

    # ----------------------------------------------------------------- internals

    def _openssl(self, *args: str) -> None:
        proc = subprocess.run(
            ["openssl", *args], capture_output=True, text=True, check=False, cwd=self.workdir
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")

    def _write_certs(self) -> None:
        d = self.workdir / "pki"
        d.mkdir()
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        self._openssl(
            "req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
            "-days", "3650", "-subj", "/CN=downtime-e2e-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
        self._openssl(
            "req", "-new", *ec, "-keyout", str(d / "apiserver.key"),
            "-out", str(d / "apiserver.csr"), "-subj", "/CN=kube-apiserver",
        )  # fmt: skip
        (d / "apiserver.ext").write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
            "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
        )
        self._openssl(
            "x509", "-req", "-in", str(d / "apiserver.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "apiserver.crt"),
            "-days", "365", "-extfile", str(d / "apiserver.ext"),
        )  # fmt: skip
        self._openssl("genrsa", "-out", str(d / "sa.key"), "2048")
        self._openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))
        self.ca_file = d / "ca.crt"
        self.admin_token = os.urandom(24).hex()
        (d / "tokens.csv").write_text(f'{self.admin_token},admin,admin-uid,"system:masters"\n')

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{name}.log"
        f = log.open("wb")
        self._log_files.append(f)
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - setsid + PDEATHSIG only
        )
        return proc, log

    def _start_etcd(self, etcd_bin: Path) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self._etcd, self.etcd_log = self._spawn(
            "etcd",
            [
                str(etcd_bin),
                "--name=e2e",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=e2e={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            self._check_alive()
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp,
            ):
                if json.loads(resp.read()).get("health") == "true":
                    return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"etcd not healthy in time\n{self.diagnostics()}")
            time.sleep(0.1)

    def _start_apiserver(self, apiserver_bin: Path) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.workdir / "pki"
        self.audit_log = self.workdir / "audit.log"
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [
                        {
                            "level": self.audit_level,
                            "resources": [
                                {"group": group, "resources": list(resources)}
                                for group, resources in AUDITED_RESOURCES
                            ],
                        },
                        {"level": "None"},
                    ],
                }
            )
        )
        self._apiserver, self.apiserver_log = self._spawn(
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                "--audit-log-maxsize=0",
            ],
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while True:
            self._check_alive()
            try:
                body = self.request("/readyz", timeout=2)
                if body.strip() == "ok":
                    break
                last = body
            except urllib.error.HTTPError as err:
                last = f"HTTP {err.code}: {err.read().decode(errors='replace')[-2000:]}"
            except (OSError, ssl.SSLError) as err:
                last = repr(err)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"kube-apiserver not ready after {self.startup_timeout}s: {last}\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(0.25)
        self.kubeconfig = self.write_kubeconfig(
            self.workdir / "kubeconfig", self.admin_token, user="admin"
        )

    def _check_alive(self) -> None:
        for name, proc in (("etcd", self._etcd), ("kube-apiserver", self._apiserver)):
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with {proc.returncode}\n{self.diagnostics()}"
                )


def _main() -> None:  # pragma: no cover - manual smoke test: python tests/e2e/controlplane.py
    with ControlPlane(keep_workdir=True) as cp:
        print(cp.kubectl("version").stdout)
        print(cp.kubectl("get", "crd").stdout)
        print("kubeconfig:", cp.kubeconfig, "timings:", cp.timings)


if __name__ == "__main__":  # pragma: no cover
    _main()


__all__ = [
    "AUDITED_RESOURCES",
    "CRDS_DIR",
    "REPO_ROOT",
    "ApiError",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "build_binaries",
    "find_kubectl",
    "free_port",
    "tail",
]
