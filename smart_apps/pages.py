"""The user-facing pages: authorize (login → patient picker → consent), and a small EHR that
launches registered apps with ``iss`` and ``launch``.

The authorize request's parameters travel as hidden form fields through each
step and are POSTed back to ``/oauth/authorize`` (SMART ``authorize-post``), so
authlib validates the very same request that the user finally approves.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Flask, Response, redirect, render_template_string, request, session

from fhir_server.validation.primitives import ID_RE
from smart_apps.endpoints import reject_nul
from smart_apps.oauth import GrantedUser
from smart_apps.server import SmartAuthServer, base_from_headers

_PRIVATE = {"_action", "_decision", "_patient", "_csrf", "username", "password"}

_LAYOUT = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:sans-serif;max-width:36em;margin:2em auto}label{display:block;margin:.5em 0}
.err{color:#9e2d2d}li{margin:.2em 0}</style></head><body><h1>{{ title }}</h1>
{% if error %}<p class="err" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
{% for k, v in hidden %}<input type="hidden" name="{{ k }}" value="{{ v }}">{% endfor %}
<input type="hidden" name="_csrf" value="{{ csrf }}">
{{ body|safe }}
</form></body></html>"""

_LOGIN = """<input type="hidden" name="_action" value="login">
<label>Username <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password"
 required></label><button type="submit" id="login">Sign in</button>"""


def _csrf() -> str:
    if "smart_csrf" not in session:
        session["smart_csrf"] = secrets.token_urlsafe(24)
    return str(session["smart_csrf"])


def _csrf_ok() -> bool:
    return hmac.compare_digest(request.form.get("_csrf", ""), session.get("smart_csrf", "-"))


def _page(
    title: str, body: str, hidden: list[tuple[str, str]], action: str, error: str = "", status: int = 200
) -> Response:
    html = render_template_string(
        _LAYOUT, title=title, body=body, hidden=hidden, action=action, error=error, csrf=_csrf()
    )
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def _login(smart: SmartAuthServer) -> tuple[dict[str, Any] | None, str]:
    """Handle a posted login form; returns (user, error)."""
    if not _csrf_ok():
        return None, "Your session expired; please sign in again."
    username = request.form.get("username", "")
    user = smart.store.authenticate_user(username, request.form.get("password", ""))
    smart.audit(
        "login",
        user is not None,
        user=username or None,
        fhir_user=user["fhir_user"] if user else None,
        detail="login succeeded" if user else "invalid username or password",
    )
    if user is None:
        return None, "Invalid username or password."
    session["smart_user"] = user["username"]
    return user, ""


def _current_user(smart: SmartAuthServer) -> dict[str, Any] | None:
    name = session.get("smart_user")
    return smart.store.get_user(name) if name else None


def _picker_body(patients: list[tuple[str, str]], action: str) -> str:
    items = "".join(
        f'<label><input type="radio" name="_patient" value="{_esc(pid)}" required> {_esc(name)}'
        f" <small>(Patient/{_esc(pid)})</small></label>"
        for pid, name in patients
    )
    return (
        f'<input type="hidden" name="_action" value="{action}">{items or "<p>No patients found.</p>"}'
        '<button type="submit" id="pick">Select patient</button>'
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def register_pages(app: Flask, smart: SmartAuthServer, oauth: Any) -> None:
    bp = Blueprint("smart_pages", __name__)
    bp.before_request(reject_nul)

    def base() -> str:
        return base_from_headers(smart.config, dict(request.headers))

    @bp.route("/oauth/authorize", methods=["GET", "POST"])
    def authorize() -> Any:
        try:
            grant = oauth.get_consent_grant(end_user=None)
        except OAuth2Error as e:
            return oauth.handle_error_response(None, e)
        params = request.values
        hidden: list[tuple[str, str]] = [
            (k, str(v)) for k, v in params.items(multi=True) if k not in _PRIVATE
        ]
        redirect_uri, state = grant.redirect_uri, params.get("state")

        def fail(error: str, description: str) -> Any:
            q = [("error", error), ("error_description", description)] + ([("state", state)] if state else [])
            return redirect(add_params_to_uri(redirect_uri, q))

        if (params.get("aud") or "").rstrip("/") != base():
            smart.audit(
                "denied", False, client_id=params.get("client_id"), detail="aud is not this FHIR base"
            )
            return fail("invalid_request", f"'aud' must be the FHIR base URL {base()}")
        action = request.form.get("_action") if request.method == "POST" else None
        user, error = _current_user(smart), ""
        if action == "login":
            user, error = _login(smart)
        if user is None:
            return _page("Sign in", _LOGIN, hidden, "/oauth/authorize", error, 401 if error else 200)

        scope = grant.request.scope or ""
        words = scope.split()
        fhir_user = user["fhir_user"]
        context: dict[str, Any] = {"smart_style_url": base().rsplit("/", 1)[0] + smart.config.style_path}
        if "launch" in words:
            launch = smart.store.get_launch(params.get("launch", ""))
            if launch is None or launch["username"] != user["username"]:
                return fail("invalid_request", "unknown or expired 'launch' for this user")
            context.update(launch["context"], need_patient_banner=False)
        elif fhir_user.startswith("Patient/"):
            context.update(patient=fhir_user.split("/", 1)[1], need_patient_banner=True)
        elif "launch/patient" in words:
            chosen = request.form.get("_patient", "") if request.method == "POST" else ""
            if not ID_RE.fullmatch(chosen):
                patients = smart.patient_lookup(params.get("_q", ""))
                return _page("Select a patient", _picker_body(patients, "pick"), hidden, "/oauth/authorize")
            context.update(patient=chosen, need_patient_banner=True)
            hidden.append(("_patient", chosen))
        if context.get("encounter"):
            context["fhirContext"] = [{"reference": f"Encounter/{context['encounter']}"}]
        if action == "consent" and _csrf_ok():
            approved = request.form.get("_decision") == "approve"
            granted = (
                GrantedUser(user["username"], fhir_user, scope, context, params.get("nonce"))
                if approved
                else None
            )
            if not approved:
                smart.audit(
                    "token",
                    False,
                    client_id=params.get("client_id"),
                    user=user["username"],
                    fhir_user=fhir_user,
                    detail="user denied consent",
                )
            return oauth.create_authorization_response(grant_user=granted, grant=grant)
        client = grant.request.client
        items = "".join(f"<li><code>{_esc(s)}</code></li>" for s in words)
        who = (
            f"<p>Patient in context: <b>Patient/{_esc(context['patient'])}</b></p>"
            if context.get("patient")
            else ""
        )
        body = (
            f"<p><b>{_esc(client.row['client_name'])}</b> asks for:</p><ul>{items}</ul>{who}"
            '<input type="hidden" name="_action" value="consent">'
            '<button name="_decision" value="approve" id="approve">Allow</button> '
            '<button name="_decision" value="deny" id="deny">Deny</button>'
        )
        return _page("Authorize app", body, hidden, "/oauth/authorize")

    @bp.route("/oauth/logout", methods=["GET", "POST"])
    def logout() -> Response:
        session.pop("smart_user", None)
        return Response("signed out", mimetype="text/plain")

    @bp.route("/ehr", methods=["GET", "POST"])
    def ehr() -> Any:
        user, error = _current_user(smart), ""
        if request.method == "POST" and request.form.get("_action") == "login":
            user, error = _login(smart)
        if user is None or not user["fhir_user"].startswith("Practitioner/"):
            if user is not None:
                error = "Only practitioners can launch apps from the EHR."
            return _page("EHR sign in", _LOGIN, [], "/ehr", error, 401 if error else 200)
        apps = [c for c in smart.store.list_clients() if c.get("launch_uri")]
        patients = smart.patient_lookup(request.args.get("q", ""))
        app_opts = "".join(
            f'<option value="{_esc(c["client_id"])}">{_esc(c["client_name"])}</option>' for c in apps
        )
        body = (
            f"<p>Signed in as {_esc(user['display'])} ({_esc(user['fhir_user'])})</p>"
            f'<label>App <select name="client_id" id="app">{app_opts}</select></label>'
            + _picker_body(patients, "launch")
            .replace('id="pick">Select patient', 'id="launch">Launch')
            .replace(
                "<button",
                '<label>Encounter id (optional) <input name="encounter" id="encounter"></label><button',
            )
        )
        return _page("EHR", body, [], "/ehr/launch", error)

    @bp.post("/ehr/launch")
    def ehr_launch() -> Any:
        user = _current_user(smart)
        if user is None or not _csrf_ok() or not user["fhir_user"].startswith("Practitioner/"):
            return redirect("/ehr")
        client = smart.store.get_client(request.form.get("client_id", ""))
        patient, encounter = request.form.get("_patient", ""), request.form.get("encounter", "").strip()
        if (
            client is None
            or not client.get("launch_uri")
            or not ID_RE.fullmatch(patient)
            or (encounter and not ID_RE.fullmatch(encounter))
        ):
            return _page(
                "EHR", "<p>Choose an app and a patient.</p>", [], "/ehr", "Invalid launch request", 400
            )
        ctx: dict[str, Any] = {"patient": patient}
        if encounter:
            ctx["encounter"] = encounter
        launch_id = smart.store.save_launch(user["username"], ctx)
        sep = "&" if "?" in client["launch_uri"] else "?"
        return redirect(client["launch_uri"] + sep + urlencode({"iss": base(), "launch": launch_id}))

    app.register_blueprint(bp)
