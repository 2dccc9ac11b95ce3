"""Drives the authorize pages like a browser: parses forms, posts hidden fields back."""

from __future__ import annotations

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.radios: list[str] = []
        self.title = ""
        self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type") == "hidden":
            self.fields.append((a["name"], a["value"]))
        if tag == "input" and a.get("type") == "radio":
            self.radios.append(a["value"])
        self._in_h1 = tag == "h1"

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_h1 = False


def parse(html: str) -> _Form:
    f = _Form()
    f.feed(html)
    return f


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(server: Any, client_id: str, scope: str, challenge: str, **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1/cb",
              "scope": scope, "state": secrets.token_urlsafe(8), "aud": server.base,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return params


def redirect_query(resp: requests.Response) -> dict[str, str]:
    assert resp.status_code == 302, resp.text[:500]
    loc = resp.headers["Location"]
    assert loc.startswith("http://127.0.0.1/cb"), loc
    out = {k: v[0] for k, v in parse_qs(urlparse(loc).query).items()}
    out["_location"] = loc
    return out


def login_and_consent(server: Any, params: dict[str, str], username: str, password: str,
                      patient: str | None = None, decision: str = "approve",
                      session: requests.Session | None = None, url: str | None = None) -> dict[str, str]:
    """Run authorize → login → (picker) → consent; returns the redirect's query parameters
    (plus ``_location``, the full redirect URL)."""
    s = session or requests.Session()
    if url is not None:
        r = s.get(url, allow_redirects=False)
    else:
        r = s.get(server.url + "/oauth/authorize", params=params, allow_redirects=False)
    for _ in range(4):
        if r.status_code == 302:
            return redirect_query(r)
        form = parse(r.text)
        data = [(k, v) for k, v in form.fields]
        if form.title == "Sign in":
            data += [("username", username), ("password", password)]
        elif form.title == "Select a patient":
            assert patient in form.radios, form.radios
            data = [(k, v) for k, v in data if k != "_action"] + [("_action", "pick"), ("_patient", patient)]
        elif form.title == "Authorize app":
            data.append(("_decision", decision))
        else:
            raise AssertionError(f"unexpected page {form.title!r}: {r.text[:300]}")
        r = s.post(server.url + "/oauth/authorize", data=data, allow_redirects=False)
    raise AssertionError("authorize flow did not finish")


def exchange(server: Any, code: str, verifier: str, client_id: str, auth: Any = None) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1/cb",
            "code_verifier": verifier}
    if auth is None:
        data["client_id"] = client_id
    return requests.post(server.url + "/oauth/token", data=data, auth=auth)
