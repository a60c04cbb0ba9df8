"""Views for the conformance table (tests/cases.py): each answers with a case's behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from grip_django import GripHttpRequest
from tests.cases import BEHAVIOURS, STREAM_TAIL, Reply


def django_response(reply: Reply, *, is_async: bool) -> HttpResponseBase:
    response: HttpResponseBase
    if reply.streamed:
        content = _chunks(reply) if is_async else _sync_chunks(reply)
        response = StreamingHttpResponse(content, status=reply.status)
    else:
        response = HttpResponse(reply.body, status=reply.status)
    del response["Content-Type"]
    if reply.content_type is not None:
        response["Content-Type"] = reply.content_type
    for name, value in reply.headers:
        response[name] = value
    return response


def _sync_chunks(reply: Reply) -> Iterator[bytes]:
    yield reply.body
    if reply.mid_stream is not None:
        reply.mid_stream()
    yield STREAM_TAIL


async def _chunks(reply: Reply) -> AsyncIterator[bytes]:
    for chunk in _sync_chunks(reply):
        yield chunk


@csrf_exempt
def case(request: GripHttpRequest, behaviour: str) -> HttpResponseBase:
    return django_response(BEHAVIOURS[behaviour](request.grip), is_async=False)


@csrf_exempt
async def async_case(request: GripHttpRequest, behaviour: str) -> HttpResponseBase:
    return django_response(BEHAVIOURS[behaviour](request.grip), is_async=True)
