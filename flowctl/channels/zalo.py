"""The ``zalo_zns`` channel: Zalo Notification Service template messages to a phone.

What the public documentation describes, and this follows (nothing here was checked against the
live service; see docs/channels.md "Zalo ZNS"):

* send: ``POST https://business.openapi.zalo.me/message/template`` with the header
  ``access_token`` and the JSON body ``{phone, template_id, template_data, tracking_id}``; the
  answer is JSON with ``error`` (0: sent) and ``message``, and ``data.msg_id`` when sent.
* refresh: ``POST https://oauth.zaloapp.com/v4/oa/access_token``, form ``refresh_token``,
  ``app_id``, ``grant_type=refresh_token``, header ``secret_key``; the answer has a new
  ``access_token``, a new ``refresh_token`` (the one sent is spent) and ``expires_in`` (seconds).

The token pair lives in the store (:class:`flowctl.ports.ChannelTokens`), replaced by
compare-and-set, so a restart or a second replica refreshes with the newest refresh token. The
message itself (``template_id``, ``template_data``, the fallback text) was rendered from the record
by the engine; this sender only normalises the phone and talks to Zalo.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from flowctl.channels.base import PermanentFailure, Receipt, Secrets, TemporaryFailure, resolve_env, shorten
from flowctl.channels.clients import ThreadClients
from flowctl.engine.sms import segments
from flowctl.engine.state import Effect
from flowctl.ports import ChannelToken, ChannelTokens, Clock, OutboxRow
from flowctl.spec.model import Channel
from flowctl.spec.phones import DEFAULT_REGION, e164, phone_problem

__all__ = ["TOKEN_URL", "ZNS_URL", "TokenStore", "ZaloSender", "normalise_phone"]

ZNS_URL = "https://business.openapi.zalo.me/message/template"
TOKEN_URL = "https://oauth.zaloapp.com/v4/oa/access_token"
DEFAULT_TIMEOUT = 30.0
#: Refresh this long before the access token runs out, so no send races its expiry.
EXPIRY_MARGIN = timedelta(minutes=5)
#: How long a refused refresh waits for another replica's rotated pair to reach the store.
ROTATION_GRACE = 2.0
#: ``expires_in`` when Zalo's answer has none usable (the documented lifetime is about 25 hours).
DEFAULT_EXPIRES_IN = 3600

# Zalo's ZNS error codes (zalo.cloud/zns/guidelines/handle-error-code; see docs/channels.md)
INVALID_TOKEN = -124
#: The phone has no Zalo account (-118) or cannot receive ZNS (-119): for good, so the fallback.
NO_ZALO = frozenset({-118, -119})
#: Unknown error, "try again later" (-100); out of quota (-115): a top-up makes a retry succeed.
TEMPORARY = frozenset({-100, -115})
#: Retrying cannot help: the app (-101..-105), the method (-106), the phone number (-108), the
#: template or its data (-109, -111, -112), the message text (-116), the template permission (-117).
PERMANENT = frozenset({-101, -102, -103, -104, -105, -106, -107, -108, -109, -110, -111, -112, -116, -117})
RETRY_STATUSES = frozenset({408, 429})


class TokenStore(ChannelTokens, Protocol):
    """What the sender needs of the store: the token pairs, and the outbox for a fallback."""

    def queue_outbox(self, effects: list[Effect], now: datetime) -> list[str]: ...


def normalise_phone(phone: str, region: str = DEFAULT_REGION) -> str:
    """``0912 345 678``, ``+84912345678``, ``84912345678`` → ``84912345678``: E.164 without its
    ``+``, what ZNS takes. A number without a country code is read in ``region`` (Config
    ``phone_region``); '' when no numbering plan has the number."""
    return e164(phone, region).removeprefix("+")


def origin_of(refresh_token: str) -> str:
    """The digest a chain of rotations is known by: never the token itself."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:32]


class ZaloSender:
    """Sends rows through ``channel`` (type ``zalo_zns``); thread-safe (one refresh at a time)."""

    concurrency = 4

    def __init__(
        self,
        channel: Channel,
        env: Mapping[str, str],
        store: TokenStore,
        clock: Clock,
        *,
        region: str = DEFAULT_REGION,
    ) -> None:
        self.channel = channel
        self.region = region
        self.env = env
        self.store = store
        self.clock = clock
        self.rotation_grace = ROTATION_GRACE
        self.timeout = channel.timeout.value.total_seconds() if channel.timeout else DEFAULT_TIMEOUT
        self.secrets = Secrets()
        self._refreshing = threading.Lock()
        self._clients = ThreadClients(self.timeout)

    @property
    def max_attempts(self) -> int:
        return self.channel.max_attempts

    def mask(self, text: str) -> str:
        return self.secrets.mask(text)

    def close(self) -> None:
        self._clients.close()

    # ---- sending

    def send(self, row: OutboxRow) -> Receipt:
        payload = row.payload
        written = str(payload.get("to") or "")
        phone = normalise_phone(written, self.region)
        if not phone:
            why = phone_problem(written, self.region) if written.strip() else "no phone to send to"
            raise PermanentFailure(f"channel {self.channel.name}: {why}")
        template_id = str(payload.get("template_id") or "")
        if not template_id:
            raise PermanentFailure(
                f"channel {self.channel.name}: the message has no template_id (use a Template with template_id)"
            )
        body = {
            "phone": phone,
            "template_id": template_id,
            "template_data": dict(payload.get("template_data") or {}),
            "tracking_id": _tracking_id(row.key),
        }
        access = self._access_token()
        answer = self._post(body, access)
        if answer.get("error") == INVALID_TOKEN:  # revoked or expired early: refresh once, send again
            access = self._access_token(stale=access)
            answer = self._post(body, access)
        return self._outcome(row, phone, answer)

    def _post(self, body: dict[str, Any], access: str) -> dict[str, Any]:
        url = self._resolve(self.channel.url or ZNS_URL, secret=False)
        where = f"ZNS {_origin(url)}"
        try:
            response = self._clients.get().post(url, json=body, headers={"access_token": access})
        except httpx.TimeoutException:
            raise TemporaryFailure(f"{where}: timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TemporaryFailure(self.mask(f"{where}: {type(exc).__name__}: {shorten(str(exc), 200)}")) from None
        return _json_answer(response, where, self.mask)

    def _outcome(self, row: OutboxRow, phone: str, answer: dict[str, Any]) -> Receipt:
        code = answer.get("error")
        message = shorten(str(answer.get("message") or ""), 120)
        if code == 0:
            data = answer.get("data")
            msg_id = data.get("msg_id", "?") if isinstance(data, dict) else "?"
            return Receipt(f"ZNS msg_id {msg_id}")
        reason = self.mask(f"channel {self.channel.name}: ZNS error {code}: {message}")
        if code in NO_ZALO:
            raise PermanentFailure(reason + self._fall_back(row, phone))
        if code in PERMANENT:
            raise PermanentFailure(reason)
        if code == INVALID_TOKEN:
            raise TemporaryFailure(reason + " (again after a refresh)")
        raise TemporaryFailure(reason)  # -100, -115 (TEMPORARY) and codes not documented: retried, bounded

    def _fall_back(self, row: OutboxRow, phone: str) -> str:
        """Queue the message once on the fallback channel (its key is derived from this row's, so
        a resend that is refused again finds it queued); what to add to the failure's reason."""
        fallback = row.payload.get("fallback")
        if not isinstance(fallback, Mapping) or not fallback.get("channel"):
            return " (no fallback channel)"
        text = str(fallback.get("text") or "")
        info = segments(text)
        effect = Effect(
            key=f"{row.key}:fallback",
            action="send_sms",
            run_id=row.run_id,
            object=row.object,
            record_id=row.record_id,
            channel=str(fallback["channel"]),
            params={
                "to": str(row.payload.get("to") or phone),
                "text": text,
                "encoding": info.encoding,
                "segments": info.segments,
                "characters": info.characters,
                "template": str(fallback.get("template") or ""),
                "fallback_of": row.key,
            },
        )
        queued = self.store.queue_outbox([effect], self.clock.now())
        return f"; {'queued' if queued else 'already queued'} on {effect.channel} as the fallback"

    # ---- tokens

    def _access_token(self, stale: str = "") -> str:
        """A usable access token: the stored one while it is fresh (and not ``stale``, the one
        Zalo just refused), else a new one from the newest refresh token."""
        with self._refreshing:
            now = self.clock.now()
            configured = self._resolve(self.channel.refresh_token)
            origin = origin_of(configured)
            stored = self.store.channel_token(self.channel.name)
            if stored is not None and stored.origin == origin:
                self._remember(stored)
                if stored.access_token != stale and not _expired(stored, now):
                    return stored.access_token
                refresh = stored.refresh_token
                expected: str | None = stored.refresh_token
            else:  # the first refresh, or the operator set a new refresh token: start from it
                refresh = configured
                expected = stored.refresh_token if stored else None
            fresh = self._refresh(refresh, origin, now)
            if fresh is None:  # refused: another replica may have spent it, and saves the next pair now
                latest = self._rotated_elsewhere(refresh, stale)
                if latest is not None:
                    return latest.access_token
                raise TemporaryFailure(
                    f"channel {self.channel.name}: Zalo refused the refresh token (if this lasts, authorise the "
                    "Official Account again and set the new refresh token in the channel's refresh_token variable)"
                )
            if self.store.swap_channel_token(self.channel.name, expected, fresh):
                return fresh.access_token
            latest = self.store.channel_token(self.channel.name)  # another writer won: the newest is theirs
            return latest.access_token if latest is not None else fresh.access_token

    def _rotated_elsewhere(self, refresh: str, stale: str) -> ChannelToken | None:
        """The pair another replica made from ``refresh`` (which Zalo just refused us as spent), if
        it shows up in the store within ``rotation_grace`` seconds: that replica's refresh was answered
        and its swap is a moment away. None when nobody rotated it (revoked, or truly lost)."""
        deadline = time.monotonic() + self.rotation_grace
        while True:
            latest = self.store.channel_token(self.channel.name)
            if latest is not None and latest.refresh_token != refresh and latest.access_token != stale:
                self._remember(latest)
                return latest
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _refresh(self, refresh_token: str, origin: str, now: datetime) -> ChannelToken | None:
        """A new pair from Zalo; None when Zalo refuses ``refresh_token`` (spent or revoked)."""
        url = self._resolve(self.channel.token_url or TOKEN_URL, secret=False)
        where = f"token refresh {_origin(url)}"
        form = {
            "refresh_token": refresh_token,
            "app_id": self._resolve(self.channel.app_id, secret=False),
            "grant_type": "refresh_token",
        }
        headers = {"secret_key": self._resolve(self.channel.secret_key)}
        try:
            response = self._clients.get().post(url, data=form, headers=headers)
        except httpx.TimeoutException:
            raise TemporaryFailure(f"{where}: timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TemporaryFailure(self.mask(f"{where}: {type(exc).__name__}: {shorten(str(exc), 200)}")) from None
        if 400 <= response.status_code < 500 and response.status_code not in RETRY_STATUSES:
            return None  # refused (an OAuth server may answer 400 for a spent grant)
        answer = _json_answer(response, where, self.mask)
        access, rotated = str(answer.get("access_token") or ""), str(answer.get("refresh_token") or "")
        if not access or not rotated:
            return None
        token = ChannelToken(
            access_token=access,
            refresh_token=rotated,
            expires_at=now + timedelta(seconds=_seconds(answer.get("expires_in"))),
            origin=origin,
            updated_at=now,
        )
        self._remember(token)
        return token

    def _remember(self, token: ChannelToken) -> None:
        self.secrets.add(token.access_token)
        self.secrets.add(token.refresh_token)

    def _resolve(self, value: str, *, secret: bool = True) -> str:
        return resolve_env(value, self.env, self.secrets if secret else None)


def _expired(token: ChannelToken, now: datetime) -> bool:
    return not token.access_token or (token.expires_at is not None and token.expires_at - EXPIRY_MARGIN <= now)


def _seconds(value: Any) -> int:
    """``expires_in``: Zalo writes it as a string of seconds ("90000")."""
    try:
        return max(60, int(str(value)))
    except ValueError:
        return DEFAULT_EXPIRES_IN


def _json_answer(response: httpx.Response, where: str, mask: Callable[[str], str]) -> dict[str, Any]:
    """The JSON answer of a 2xx response; HTTP errors as failures (5xx/408/429 temporary)."""
    status = response.status_code
    if not 200 <= status < 300:
        reason = mask(f"{where}: HTTP {status}: {shorten(response.text, 200)}")
        if status >= 500 or status in RETRY_STATUSES:
            raise TemporaryFailure(reason)
        raise PermanentFailure(reason)
    try:
        answer = json.loads(response.content)
    except ValueError:
        raise TemporaryFailure(mask(f"{where}: the answer is not JSON: {shorten(response.text, 120)}")) from None
    if not isinstance(answer, dict):
        raise TemporaryFailure(f"{where}: the answer is not a JSON object")
    return answer


def _tracking_id(key: str) -> str:
    """The outbox key (it names the message in Zalo's reports); a digest when it is long."""
    return key if len(key) <= 48 else hashlib.sha256(key.encode()).hexdigest()[:40]


def _origin(url: str) -> str:
    parts = httpx.URL(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.host}{port}"
