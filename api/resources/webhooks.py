"""/v1/webhooks: a tenant's webhook endpoints, their deliveries, redelivery and a test
event. The rules are the database's (sql/repeatable/520_webhooks.sql: plan feature
`webhooks`, event types, the URL's form); this module generates the signing secret,
shows it once and hands the database only its ciphertext (db/webhooks.py), and refuses
URLs webhooks may not call (https only, no private or loopback address: SSRF; the sender
checks the resolved address again when it sends).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import falcon
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.errors import Problem
from api.models import Body, Page
from api.resources.base import (
    PAGE_QUERY,
    body,
    call,
    call_one,
    list_page,
    preconditions,
    principal,
    represent,
    shape,
)
from api.spec import operation
from db import webhooks
from db.settings import Settings

# -- bodies --------------------------------------------------------------------------------

EventTypes = list[str]


class WebhookCreate(Body):
    url: str = Field(max_length=2000, description="https URL that receives the events (POST, JSON, signed).")
    event_types: EventTypes = Field(
        min_length=1, max_length=100, description='Event types to receive (e.g. "project.created"), or ["*"].'
    )
    description: str = Field(default="", max_length=1000)
    active: bool = True


class WebhookChange(Body):
    url: str | None = Field(default=None, max_length=2000)
    event_types: EventTypes | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    active: bool | None = None


class Webhook(BaseModel):
    endpoint_id: uuid.UUID
    url: str
    event_types: list[str]
    active: bool
    description: str
    created_by: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class WebhookWithSecret(Webhook):
    secret: str = Field(
        description="The signing secret (whsec_...), shown once: verify each delivery's webhook-signature with it."
    )


class WebhookPage(Page[Webhook]):
    pass


class Delivery(BaseModel):
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID = Field(description="The webhook-id header: the same for every delivery of one event.")
    event_type: str | None
    status: str = Field(description="pending, succeeded or dead")
    attempts: int
    next_attempt_at: dt.datetime
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class DeliveryPage(Page[Delivery]):
    pass


class Attempt(BaseModel):
    attempt_no: int
    status_code: int | None
    latency_ms: int
    response_snippet: str | None
    error: str | None
    attempted_at: dt.datetime


class DeliveryDetail(Delivery):
    occurred_at: dt.datetime
    payload: dict[str, Any]
    attempt_log: list[Attempt]


class TestEvent(BaseModel):
    event_id: uuid.UUID
    event_type: str
    endpoint_id: uuid.UUID


# -- resources -----------------------------------------------------------------------------


def _check_url(settings: Settings, url: str | None) -> None:
    if url is None:
        return
    problem = webhooks.url_problem(url, settings.webhooks_allow_private_addresses)
    if problem:
        raise Problem(422, "invalid_body", problem, field="url")


class WebhooksResource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keyring: webhooks.Keyring | None = None

    def keyring(self) -> webhooks.Keyring:
        # on first use: building the routes (the OpenAPI document, tests) touches no key
        if self._keyring is None:
            self._keyring = webhooks.keyring(self.settings)
        return self._keyring

    @operation(
        summary="List webhook endpoints (keyset pagination, oldest first)",
        scope="webhooks:read",
        function="api.list_webhooks",
        response=WebhookPage,
        paginated=True,
        query=PAGE_QUERY,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list_page(req, Webhook, "endpoint_id")

    @operation(
        summary="Register a webhook endpoint; the answer shows its signing secret, once (plan feature webhooks)",
        scope="webhooks:write",
        function="api.create_webhook",
        body=WebhookCreate,
        response=WebhookWithSecret,
        status=201,
        # no Idempotency-Key: a replay would keep the answer, and so the secret, in the database
        conditional=True,
        errors=(403, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, WebhookCreate)
        _check_url(self.settings, data.url)
        secret = webhooks.new_secret()
        ciphertext = self.keyring().encrypt(secret, principal(req).tenant)
        row = call_one(req, **data.model_dump(), secret_ciphertext=ciphertext)
        represent(req, resp, Webhook, row, status=201)
        resp.media = {**resp.media, "secret": secret}


class WebhookResource:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @operation(
        summary="Get a webhook endpoint",
        scope="webhooks:read",
        function="api.get_webhook",
        response=Webhook,
        conditional=True,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        represent(req, resp, Webhook, call_one(req, endpoint_id=endpoint_id))

    @operation(
        summary="Change a webhook endpoint's url, event types, active flag or description",
        scope="webhooks:write",
        function="api.update_webhook",
        body=WebhookChange,
        response=Webhook,
        conditional=True,
        errors=(404, 422),
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        changes = body(req, WebhookChange).model_dump(mode="json", exclude_unset=True)
        _check_url(self.settings, changes.get("url"))
        found = call_one(req, endpoint_id=endpoint_id, changes=Jsonb(changes), **preconditions(req))
        represent(req, resp, Webhook, found)

    @operation(
        summary="Delete a webhook endpoint with its deliveries",
        scope="webhooks:write",
        function="api.delete_webhook",
        response=Webhook,
        conditional=True,
        errors=(404,),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        represent(req, resp, Webhook, call_one(req, endpoint_id=endpoint_id, **preconditions(req)))


class WebhookDeliveriesResource:
    @operation(
        summary="List a webhook endpoint's deliveries (keyset pagination, oldest first)",
        scope="webhooks:read",
        function="api.list_webhook_deliveries",
        response=DeliveryPage,
        paginated=True,
        query=PAGE_QUERY,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        resp.media = list_page(req, Delivery, "delivery_id", endpoint_id=endpoint_id)


class WebhookDeliveryResource:
    @operation(
        summary="One delivery with its event and every attempt (status, latency, the start of the answer)",
        scope="webhooks:read",
        function="api.get_webhook_delivery",
        response=DeliveryDetail,
        errors=(404,),
    )
    def on_get(
        self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> None:
        found = call_one(req, endpoint_id=endpoint_id, delivery_id=delivery_id)["get_webhook_delivery"]
        resp.media = shape(DeliveryDetail, found)


class WebhookRedeliverResource:
    @operation(
        summary="Send a delivery's event to the endpoint again (a new delivery, the same webhook-id)",
        scope="webhooks:write",
        function="api.redeliver_webhook",
        response=Delivery,
        status=202,
        errors=(404,),
    )
    def on_post(
        self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
    ) -> None:
        resp.media = shape(Delivery, call_one(req, endpoint_id=endpoint_id, delivery_id=delivery_id))
        resp.status = 202


class WebhookTestResource:
    @operation(
        summary="Send a webhook.test event to this endpoint, through the outbox like any event",
        scope="webhooks:write",
        function="api.send_test_webhook",
        response=TestEvent,
        status=202,
        errors=(404,),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, endpoint_id: uuid.UUID) -> None:
        resp.media = shape(TestEvent, call(req, endpoint_id=endpoint_id)[0])
        resp.status = 202
