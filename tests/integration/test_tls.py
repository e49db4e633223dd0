"""TLS in front of the pool: Debian's nginx with deploy/tls/nginx-grpc.conf, a throwaway CA.

nginx comes from scripts/install.sh (root with apt only); without it this test skips.
The test writes a CA and a server certificate for 127.0.0.1 into a temp dir, starts its
own nginx (own prefix, pid file and error log, `daemon off`, loopback only) in front of
the pool's plaintext port, calls through it with the Python client's TLS options, and
stops nginx by its PID.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedpool import EmbeddingClient
from embedpool.errors import PoolUnavailableError
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import ROOT, Pool, free_port

pytestmark = pytest.mark.integration

TEMPLATE = ROOT / "deploy" / "tls" / "nginx-grpc.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def write_certificates(directory: Path) -> tuple[bytes, Path, Path]:
    """A self-signed CA and a server certificate it signs for 127.0.0.1 / localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "embedpool test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path


def wait_for_tls(port: int, ca_pem: bytes, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
                context.wrap_socket(sock, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nginx did not answer TLS on port {port}")


@pytest.fixture(scope="module")
def tls_front(pool: Pool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, bytes]]:
    if NGINX is None:
        pytest.skip(
            "nginx is not installed (scripts/install.sh installs Debian's nginx-light as root with apt)"
        )
    prefix = tmp_path_factory.mktemp("nginx")
    ca_pem, cert, key = write_certificates(prefix)
    port = free_port()
    values = {
        "TLS_LISTEN": f"127.0.0.1:{port}",
        "POOL_TARGET": pool.target,
        "POOL_HTTP_TARGET": pool.http_url.removeprefix("http://"),
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "NGINX_PREFIX": str(prefix),
    }
    config = TEMPLATE.read_text()
    for name, value in values.items():
        config = config.replace("${" + name + "}", value)
    assert not any("${" in line.split("#")[0] for line in config.splitlines())  # every placeholder filled
    (prefix / "nginx.conf").write_text(config)
    log = prefix / "error.log"
    command = [
        NGINX,
        "-p",
        str(prefix),
        "-e",
        str(log),
        "-c",
        str(prefix / "nginx.conf"),
        "-g",
        "daemon off;",
    ]
    check = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_tls(port, ca_pem, proc)
        yield f"127.0.0.1:{port}", ca_pem
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful stop, by our own PID
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_the_client_calls_the_pool_through_tls(tls_front: tuple[str, bytes]) -> None:
    target, ca_pem = tls_front
    with EmbeddingClient(target=target, root_certificates=ca_pem, timeout=60) as client:
        assert len(client.get_query_embedding("Which planet is known as the Red Planet?")) == 384
        assert client.embed(["a", "b", "c"]).embeddings.shape == (3, 384)
        documents = [
            "Venus is often called Earth's twin because of its similar size and proximity.",
            "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
        ]
        assert client.rank("Which planet is known as the Red Planet?", documents, top_k=1)[0][0] == 1
        assert client.count_tokens(["hello world"]) == [4]
    # Raw stubs over the same TLS channel: health and the bidirectional stream pass nginx too.
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca_pem))
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stream = pb_grpc.EmbeddingServiceStub(channel).EmbedStream(
        iter(
            [
                pb.EmbedStreamRequest(request_id=str(i), request=pb.EmbedRequest(inputs=[f"t{i}"]))
                for i in range(5)
            ]
        ),
        timeout=60,
    )
    assert sorted(r.request_id for r in stream) == ["0", "1", "2", "3", "4"]
    # An error keeps its code and message through nginx.
    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.EmbeddingServiceStub(channel).Embed(pb.EmbedRequest(inputs=[]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "inputs is empty" in err.value.details()
    channel.close()


def test_a_client_without_the_ca_cannot_connect(tls_front: tuple[str, bytes]) -> None:
    target, _ = tls_front
    system_roots_only = EmbeddingClient(target=target, tls=True, timeout=10, retries=0)
    with system_roots_only, pytest.raises(PoolUnavailableError) as err:
        system_roots_only.get_text_embedding("x")
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    plaintext = EmbeddingClient(target=target, timeout=10, retries=0)
    with plaintext, pytest.raises(PoolUnavailableError):
        plaintext.get_text_embedding("x")


def test_the_openai_sdk_calls_the_pool_through_tls(tls_front: tuple[str, bytes]) -> None:
    target, ca_pem = tls_front
    verify = ssl.create_default_context(cadata=ca_pem.decode())
    with httpx.Client(verify=verify, timeout=60) as http:
        sdk = openai.OpenAI(
            base_url=f"https://{target}/v1", api_key="unused", http_client=http, max_retries=0
        )
        got = sdk.embeddings.create(model="all-minilm-l6-v2", input=["a", "b", "c"])
        assert [len(d.embedding) for d in got.data] == [384, 384, 384]
        with pytest.raises(openai.BadRequestError, match="inputs is empty"):
            sdk.embeddings.create(model="all-minilm-l6-v2", input=[])
        assert http.get(f"https://{target}/health").status_code == 200
    with httpx.Client(timeout=10) as untrusted, pytest.raises(httpx.ConnectError):
        untrusted.get(f"https://{target}/health")
