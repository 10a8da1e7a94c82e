"""Scanners no one here wrote against a running server (issue 23, point 5): testssl.sh and
sslyze find no protocol below TLS 1.2, no weak cipher, no vulnerability they test for. Their
JSON is read, not their exit codes alone. The certificate is a test CA's (given to both),
90 days long, as a real one would be. testssl takes about 90 s."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest

from tests.support.servers import start_server
from tests.support.tls import Pki, start_tls
from tests.support.tools import need

WEAK = ("NULL", "anon", "EXPORT", "RC4", "3DES", "DES", "IDEA", "MD5", "CBC", "SEED", "CAMELLIA",
        "ARIA", "PSK", "SRP")
# testssl findings that say something of the test certificate or of the app, not of the TLS
# the server speaks: no CRL/OCSP URL in a test CA's certificate, no DNS CAA record for a.test,
# no HSTS or security headers from the test app. cipher_order: Mozilla's intermediate profile
# leaves the choice to the client (ssl_prefer_server_ciphers off, as nginx's config there).
# sessionresumption_ticket: testssl 3.0.8 reports a connect problem for its ticket check,
# while `openssl s_client -sess_out/-sess_in` resumes (TLS 1.2 and 1.3) and the resumption
# tests in test_tls_handshake.py pass.
NOT_OF_THE_TLS = {"cert_revocation", "DNS_CAArecord", "HSTS", "security_headers",
                  "cipher_order", "sessionresumption_ticket"}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scanned")
    pki = Pki(tmp / "pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    servers = []

    def serve(*args, **kw):
        servers.append(start_server(tmp, *args, **kw))
        return servers[-1]

    pair = pki.issue("a.test", "127.0.0.1", not_before=now - datetime.timedelta(days=1),
                     not_after=now + datetime.timedelta(days=90))
    server = start_tls(serve, [pair])
    yield server, pki, tmp
    for s in servers:
        s.stop()


def test_testssl(target):
    server, pki, tmp = target
    testssl = need("testssl", "Debian's testssl.sh package")
    out = tmp / "testssl.json"
    r = subprocess.run([testssl, "--quiet", "--warnings", "off", "--color", "0",
                        "--add-ca", str(pki.ca_path), "--jsonfile", str(out),
                        "--ip", "127.0.0.1", f"a.test:{server.port}"],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    findings = {f["id"]: f for f in json.loads(out.read_text())}
    assert len(findings) > 50, r.stdout[-2000:]
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[proto]["finding"] == "not offered", findings[proto]
    assert findings["TLS1_2"]["finding"] == "offered"
    assert findings["TLS1_3"]["finding"].startswith("offered")
    for weak in ("NULL", "aNULL", "EXPORT", "LOW", "3DES_IDEA", "AVERAGE"):
        assert findings[f"cipherlist_{weak}"]["finding"] == "not offered", weak
    for vuln in ("heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego",
                 "secure_client_renego", "CRIME_TLS", "BREACH", "POODLE_SSL", "fallback_SCSV",
                 "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4"):
        assert findings[vuln]["severity"] == "OK", findings[vuln]
    flagged = {i: f"{f['severity']}: {f['finding']}" for i, f in findings.items()
               if f["severity"] not in ("OK", "INFO") and i not in NOT_OF_THE_TLS}
    assert flagged == {}
    assert findings["cert_chain_of_trust"]["severity"] == "OK"


def test_sslyze(target):
    server, pki, tmp = target
    out = tmp / "sslyze.json"
    r = subprocess.run([sys.executable, "-m", "sslyze", f"--json_out={out}",
                        "--mozilla_config=intermediate", f"--certinfo_ca_file={pki.ca_path}",
                        f"a.test:{server.port}{{127.0.0.1}}"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    # sslyze's own verdict against Mozilla's intermediate profile: compliant but for the
    # certificate's path, which its verifier refuses for trustme's own sake (a critical SAN
    # beside a subject: "EE subjectAltName MUST NOT be critical when subject is nonempty")
    verdict = r.stdout.partition("COMPLIANCE AGAINST TLS CONFIGURATION")[2]
    problems = [line.strip()[2:] for line in verdict.splitlines()
                if line.strip().startswith("* ")]
    assert verdict and all(p.startswith("certificate_path_validation:") for p in problems), \
        r.stdout[-1500:]
    scan = json.loads(out.read_text())["server_scan_results"][0]["scan_result"]
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        result = scan[f"{old}_cipher_suites"]["result"]
        assert not result["is_tls_version_supported"] and not result["accepted_cipher_suites"]
    for version in ("tls_1_2", "tls_1_3"):
        accepted = [c["cipher_suite"]["name"]
                    for c in scan[f"{version}_cipher_suites"]["result"]["accepted_cipher_suites"]]
        assert accepted, version
        assert not [c for c in accepted if any(w in c for w in WEAK)], accepted
    assert scan["tls_compression"]["result"]["supports_compression"] is False
    assert scan["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"] is False
    assert scan["heartbleed"]["result"]["is_vulnerable_to_heartbleed"] is False
    assert scan["robot"]["result"]["robot_result"].startswith("NOT_VULNERABLE")
    assert scan["tls_fallback_scsv"]["result"]["supports_fallback_scsv"] is True
    reneg = scan["session_renegotiation"]["result"]
    assert reneg["is_vulnerable_to_client_renegotiation_dos"] is False
    assert reneg["supports_secure_renegotiation"] is True
    assert scan["tls_extended_master_secret"]["result"]["supports_ems_extension"] is True
