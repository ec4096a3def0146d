"""Slack sinks (slack-sdk): an incoming webhook, or a bot token with chat.postMessage / chat.update.

Both raise `DeliveryError` with the retry decision made here, where the HTTP details are known: 429 →
retry after ``Retry-After``; 5xx, timeouts and connection errors → retry with backoff; other 4xx / API
errors (invalid token, unknown channel, rejected blocks) → permanent. slack-sdk's own retry handlers are
off: the outbox owns retries, so an attempt is one HTTP request. Error messages never contain the webhook
URL or the token.

The bot-token sink stamps each message with Slack message metadata ``{"outbox_id": N}``. When told a
previous attempt may have gone through (`Outgoing.maybe_sent`) it looks for that message in the channel's
recent history (needs the ``channels:history`` scope and a channel id; if the lookup fails it posts again).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from inference.tls import client_context
from monitor.alerts.outbox import DeliveryError, Outgoing

log = logging.getLogger(__name__)
_sdk_log = logging.getLogger(f"{__name__}.sdk")
"""slack-sdk's logger for our clients: it logs an ERROR line for every request that fails to connect, then
raises; the sink turns the exception into a `DeliveryError` that the outbox logs (rarely) itself, so the SDK's
line would only repeat it every ``backoff_max`` for as long as Slack is unreachable."""
_sdk_log.setLevel(logging.CRITICAL)

EVENT_TYPE = "watchkeeper_alert"
_TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
_GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}


def _maybe_reached(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` may still have reached Slack: yes unless the connection was
    never made (refused, no route, name not resolved): a timeout or a reset can come after Slack took it."""
    seen: BaseException | None = exc
    for _ in range(5):  # urllib wraps the socket error in URLError.reason; others chain it
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError | socket.gaierror) or getattr(seen, "errno", None) in (
                errno.EHOSTUNREACH, errno.ENETUNREACH):
            return False
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else (seen.__cause__ or seen.__context__)
    return True


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            value = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def _http_failure(status: int, what: str, headers: Mapping[str, Any] | None) -> DeliveryError:
    if status == 429:
        return DeliveryError(f"rate limited (429): {what}", retry_after=_retry_after(headers) or 1.0)
    return DeliveryError(f"HTTP {status}: {what}", permanent=400 <= status < 500)


class SlackWebhookSink:
    """Posts to an incoming webhook. No reference comes back, so resolutions are new messages."""

    def __init__(self, url: str, *, timeout: float = 10.0, ca_file: str | None = None) -> None:
        self._client = WebhookClient(url, timeout=timeout, retry_handlers=[],  # type: ignore[arg-type]
                                     ssl=client_context(ca_file), logger=_sdk_log)

    def send(self, message: Outgoing) -> str | None:
        payload = message.payload
        try:
            resp = self._client.send(text=payload["text"], blocks=payload.get("blocks"), unfurl_links=False)
        except (OSError, SlackClientError) as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}",
                                maybe_delivered=_maybe_reached(exc)) from None
        if resp.status_code == 200:
            return None
        raise _http_failure(resp.status_code, str(resp.body)[:200], resp.headers)


class SlackApiSink:
    """Posts with chat.postMessage and edits in place with chat.update; returns ``channel:ts``."""

    def __init__(self, token: str, *, base_url: str = "https://slack.com/api/", timeout: float = 10.0,
                 ca_file: str | None = None) -> None:
        self._client = WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)), retry_handlers=[],
                                 ssl=client_context(ca_file), logger=_sdk_log)

    def send(self, message: Outgoing) -> str | None:
        payload = message.payload
        try:
            if message.updates_ref:
                channel, _, ts = message.updates_ref.partition(":")
                try:
                    self._client.chat_update(channel=channel, ts=ts, text=payload["text"],
                                             blocks=payload.get("blocks"))
                    return message.updates_ref
                except SlackApiError as exc:
                    if exc.response.get("error") not in _GONE:
                        raise
                    log.info("message %s to update is gone; posting the update as a new message", ts)
            if message.maybe_sent and (found := self._find(message)):
                return found
            resp = self._client.chat_postMessage(
                channel=message.channel or "", text=payload["text"], blocks=payload.get("blocks"),
                metadata={"event_type": EVENT_TYPE, "event_payload": {"outbox_id": message.id}},
                unfurl_links=False, unfurl_media=False,
            )
            return f"{resp['channel']}:{resp['ts']}"
        except SlackApiError as exc:
            resp = exc.response
            error = str(resp.get("error", ""))
            if resp.status_code == 429 or error == "ratelimited":
                raise DeliveryError("rate limited (429)", retry_after=_retry_after(resp.headers) or 1.0) from None
            permanent = resp.status_code < 500 and error not in _TRANSIENT_ERRORS
            raise DeliveryError(f"Slack API HTTP {resp.status_code}: {error[:200]}", permanent=permanent) from None
        except (OSError, SlackClientError) as exc:
            raise DeliveryError(f"Slack API unreachable: {type(exc).__name__}: {exc}",
                                maybe_delivered=_maybe_reached(exc)) from None

    def _find(self, message: Outgoing) -> str | None:
        """The ``channel:ts`` of a message an earlier, cut-off attempt posted, if it is there."""
        try:
            resp = self._client.conversations_history(
                channel=message.channel or "", oldest=str(message.created_at.timestamp() - 60),
                include_all_metadata=True, limit=200)
        except (SlackClientError, OSError) as exc:
            log.info("could not check whether notification %d was already posted (%s); posting it",
                     message.id, type(exc).__name__)
            return None
        for msg in resp.get("messages", []):
            meta = msg.get("metadata") or {}
            if meta.get("event_type") == EVENT_TYPE and meta.get("event_payload", {}).get("outbox_id") == message.id:
                log.info("notification %d was already posted before a restart; not posting it again", message.id)
                return f"{resp.get('channel') or message.channel}:{msg['ts']}"
        return None
