#!/usr/bin/env python3
"""Generate SDK-HMAC-SHA256 test vectors for package aksk.

This is an independent implementation of the signing algorithm, written from
its prose description (and EdgeGallery's mep-agent signer), not from the Go
code. The Go test (vectors_test.go) loads vectors.json and checks that the Go
package produces the same canonical request, string to sign, signature and
Authorization header for every case.

Run from this directory:  python3 gen_vectors.py > vectors.json

Algorithm:
  canonical request = METHOD, canonical URI, canonical query, canonical
      headers, signed names, hex(sha256(body)), joined by "\n".
  canonical URI     = the percent-decoded path split on "/", dropping "", "."
      and "..", each segment quote_plus'd, joined by "/", with a leading "/"
      and always a trailing "/".
  canonical query   = every quote_plus(key)=quote_plus(value) pair (one per
      value), sorted, joined by "&".
  canonical headers = for each signed header, "name:" + its values sorted (as
      sent, before trimming), each trimmed, joined by ","; the lines sorted;
      joined by "\n" and followed by "\n". "host" is the host:port addressed;
      a signed header the request lacks has no value ("name:").
  signed names      = lowercase, de-duplicated, sorted, joined by ";".
  string to sign    = "SDK-HMAC-SHA256\n" + x-sdk-date + "\n" +
      hex(sha256(canonical request)).
  signature         = hex(hmac_sha256(SK, string to sign)).
"""

import hashlib
import hmac
import json
import sys
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"


def canonical_uri(raw_path):
    segments = [s for s in unquote(raw_path).split("/") if s not in ("", ".", "..")]
    if not segments:
        return "/"
    return "/" + "/".join(quote_plus(s) for s in segments) + "/"


def canonical_query(raw_query):
    pairs = parse_qsl(raw_query, keep_blank_values=True, strict_parsing=False)
    return "&".join(sorted(quote_plus(k) + "=" + quote_plus(v) for k, v in pairs))


def canonical_headers(host, headers, signed):
    lines = []
    for name in signed:
        if name == "host":
            values = [host]
        else:
            values = [v for (k, v) in headers if k.lower() == name]
        values = [v.strip(" \t") for v in sorted(values)]
        lines.append(name + ":" + ",".join(values))
    return "\n".join(sorted(lines)) + "\n"


def vector(case):
    target = urlsplit(case["target"])
    signed = sorted({n.lower() for n in case["signed_headers"]})
    body = case["body"].encode("utf-8")
    body_hash = hashlib.sha256(body).hexdigest()
    canonical = "\n".join([
        case["method"],
        canonical_uri(target.path),
        canonical_query(target.query),
        canonical_headers(case["host"], case["headers"], signed),
        ";".join(signed),
        body_hash,
    ])
    string_to_sign = "\n".join([
        ALGORITHM,
        case["date"],
        hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    ])
    signature = hmac.new(case["sk"].encode("utf-8"), string_to_sign.encode("utf-8"),
                         hashlib.sha256).hexdigest()
    authorization = (ALGORITHM + " Access=" + case["ak"] + ", SignedHeaders=" +
                     ";".join(signed) + ", Signature=" + signature)
    out = dict(case)
    out.update({
        "body_sha256": body_hash,
        "canonical_request": canonical,
        "string_to_sign": string_to_sign,
        "signature": signature,
        "authorization": authorization,
    })
    return out


AK = "QVUJMSUMgS0VZLS0tLS0"
SK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"
DATE = "20260623T101500Z"

CASES = [
    {
        "name": "edgegallery token request",
        "method": "POST",
        "host": "127.0.0.1:8080",
        "target": "/mep/token",
        "headers": [["Content-Type", "application/json"], ["X-Sdk-Date", DATE]],
        "signed_headers": ["content-type", "host", "x-sdk-date"],
        "body": "",
        "ak": AK, "sk": SK, "date": DATE,
    },
    {
        "name": "curl-style host and date only, root path",
        "method": "POST",
        "host": "mep-auth.kmep.svc:8443",
        "target": "/",
        "headers": [["X-Sdk-Date", DATE]],
        "signed_headers": ["x-sdk-date", "host"],
        "body": "",
        "ak": "AKIDEXAMPLE000000000", "sk": "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0xMjM0", "date": DATE,
    },
    {
        "name": "path segments needing escaping and a trailing slash",
        "method": "GET",
        "host": "[::1]:8080",
        "target": "/mep//mec_service_mgmt/./v1/../app%20instance/a+b/caf%C3%A9/%7Euser/x%3Dy/",
        "headers": [["X-Sdk-Date", DATE]],
        "signed_headers": ["host", "x-sdk-date"],
        "body": "",
        "ak": AK, "sk": SK, "date": DATE,
    },
    {
        "name": "query with repeated keys and values needing escaping",
        "method": "GET",
        "host": "localhost:8080",
        "target": "/mep/mec_service_mgmt/v1/services?ser_name=b&ser_name=a%20b&x%2Fy=1%2B1&empty=&flag&q=a+b&u=%C3%BC%26%3D",
        "headers": [["X-Sdk-Date", DATE]],
        "signed_headers": ["host", "x-sdk-date"],
        "body": "",
        "ak": AK, "sk": SK, "date": DATE,
    },
    {
        "name": "multi-valued header with spaces, prefix-sharing names, absent header",
        "method": "PUT",
        "host": "mep:8080",
        "target": "/mep/mec_app_support/v1/applications/5abe4782-2c70-4e47-9a4e-0ee3a1a0fd1f/subscriptions",
        "headers": [
            ["X-Custom", "  zeta"],
            ["X-Custom", "alpha beta "],
            ["X-Custom", "\tmid"],
            ["X-Custom-Id", " 42 "],
            ["Accept", "application/json"],
            ["X-Sdk-Date", DATE],
        ],
        "signed_headers": ["X-Custom", "x-custom-id", "host", "X-Sdk-Date", "x-custom", "x-absent"],
        "body": "",
        "ak": AK, "sk": SK, "date": DATE,
    },
    {
        "name": "JSON body",
        "method": "POST",
        "host": "127.0.0.1:8080",
        "target": "/mep/mec_service_mgmt/v1/applications/app-1/services",
        "headers": [["Content-Type", "application/json"], ["X-Sdk-Date", "20251231T235959Z"]],
        "signed_headers": ["content-type", "host", "x-sdk-date"],
        "body": "{\"serName\":\"location\",\"version\":\"1.0\",\"state\":\"ACTIVE\",\"serializer\":\"JSON\"}",
        "ak": AK, "sk": SK, "date": "20251231T235959Z",
    },
]


def main():
    json.dump({"cases": [vector(c) for c in CASES]}, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
