"""The presence store contract, run on every backend (memory, SQLite, Redis): no drifting."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from grip_asgi.presence import Member, PresenceUnavailableError

from .conftest import Backend

pytestmark = pytest.mark.anyio

LONG = 600.0  # a ttl no test lets run out


def clients(members: list[Member]) -> list[str]:
    return [member.client for member in members]


# -- join, members ------------------------------------------------------------------------------


def test_a_new_channel_has_no_members(backend: Backend) -> None:
    store = backend.open().sync
    assert store.members("room") == []
    assert store.expire("room") == []
    assert store.leave("room", "c1") is None
    assert store.touch("room", "c1", ttl=LONG) is False
    assert store.members("room") == []  # touch did not make a member


def test_join_adds_a_member_once(backend: Backend) -> None:
    store = backend.open().sync
    before = backend.now()
    assert store.join("room", "c1", ttl=LONG, user="ann", info={"colour": "red"}) is True
    after = backend.now()

    [member] = store.members("room")
    assert (member.channel, member.client, member.user, member.info) == (
        "room",
        "c1",
        "ann",
        {"colour": "red"},
    )
    # Redis times members by its server's clock, the others by the store's: a loose bound.
    assert before - 60 <= member.joined <= after + 60
    assert member.expires == pytest.approx(member.joined + LONG, abs=1e-3)
    assert member.to_json() == {"client": "c1", "user": "ann", "info": {"colour": "red"}}


def test_joining_again_refreshes_and_is_not_a_new_join(backend: Backend) -> None:
    store = backend.open().sync
    assert store.join("room", "c1", ttl=60, user="ann", info=1) is True
    [first] = store.members("room")
    backend.pass_time(0.05)
    assert store.join("room", "c1", ttl=LONG, user="ann2", info={"n": 2}) is False

    [refreshed] = store.members("room")
    assert (refreshed.user, refreshed.info) == ("ann2", {"n": 2})
    assert refreshed.joined == first.joined  # still the same membership
    assert refreshed.expires > first.expires


def test_members_are_ordered_by_joined_time(backend: Backend) -> None:
    store = backend.open().sync
    for client in ("zed", "amy", "kim"):
        store.join("room", client, ttl=LONG)
        backend.pass_time(0.01)
    assert clients(store.members("room")) == ["zed", "amy", "kim"]


def test_members_joined_at_the_same_time_are_ordered_by_client(clocked_backend: Backend) -> None:
    # Only a fake clock makes two joins happen at the same time.
    store = clocked_backend.open().sync
    for client in ("zed", "amy", "kim"):
        store.join("room", client, ttl=LONG)
    assert clients(store.members("room")) == ["amy", "kim", "zed"]


@pytest.mark.parametrize(
    "info",
    [
        None,
        0,
        -1.5,
        10**20,
        "text",
        "",
        True,
        [1, "two", None, {"three": [3]}],
        {"name": "Zoë 🎉", "nested": {"list": [], "none": None}},
        {"line": "a\nb\u2028c", "quote": '"\\'},
        "\ud800 lone surrogate",
    ],
    ids=lambda info: repr(info)[:20],
)
def test_info_comes_back_as_json(backend: Backend, info: Any) -> None:
    store = backend.open().sync
    store.join("room", "c1", ttl=LONG, info=info)
    assert store.members("room")[0].info == info
    left = store.leave("room", "c1")
    assert left is not None
    assert left.info == info


def test_tuples_come_back_as_lists_and_the_caller_cannot_change_a_member(
    backend: Backend,
) -> None:
    store = backend.open().sync
    info: dict[str, Any] = {"tags": ("a", "b")}
    store.join("room", "c1", ttl=LONG, user=None, info=info)
    info["tags"] = "changed"
    [member] = store.members("room")
    assert member.user is None
    assert member.info == {"tags": ["a", "b"]}
    member.info["tags"].append("c")
    assert store.members("room")[0].info == {"tags": ["a", "b"]}


@pytest.mark.parametrize(
    "channel",
    [
        "a:b:c",
        "with spaces",
        "ünïcödé ∂ 🎉",
        "{tag}",
        "glob*?[chars]",
        "presence:info:x",
        "nul\x00",
    ],
)
def test_channels_are_separate(backend: Backend, channel: str) -> None:
    store = backend.open().sync
    store.join("plain", "c1", ttl=LONG, user="other")
    assert store.join(channel, "c1", ttl=LONG, user="mine") is True
    assert [(m.channel, m.user) for m in store.members(channel)] == [(channel, "mine")]
    assert [(m.channel, m.user) for m in store.members("plain")] == [("plain", "other")]
    assert store.leave(channel, "c1") is not None
    assert store.members(channel) == []
    assert clients(store.members("plain")) == ["c1"]


# -- touch, leave ------------------------------------------------------------------------------


def test_touch_extends_a_live_member(backend: Backend) -> None:
    store = backend.open().sync
    store.join("room", "c1", ttl=backend.short_ttl, user="ann", info={"a": 1})
    [before] = store.members("room")
    assert store.touch("room", "c1", ttl=LONG) is True
    [after] = store.members("room")
    assert after.expires > before.expires
    assert (after.joined, after.user, after.info) == (before.joined, "ann", {"a": 1})
    backend.pass_time(backend.short_ttl)
    assert clients(store.members("room")) == ["c1"]  # the touch kept it
    assert store.expire("room") == []


def test_leave_removes_a_live_member_once(backend: Backend) -> None:
    store = backend.open().sync
    store.join("room", "c1", ttl=LONG, user="ann", info={"a": 1})
    store.join("room", "c2", ttl=LONG)
    [joined, _] = store.members("room")

    left = store.leave("room", "c1")
    assert left == joined
    assert store.leave("room", "c1") is None
    assert clients(store.members("room")) == ["c2"]
    assert store.touch("room", "c1", ttl=LONG) is False
    assert store.join("room", "c1", ttl=LONG) is True  # a new membership


# -- expiry -------------------------------------------------------------------------------------


def test_a_member_expires_after_its_ttl_and_expire_reports_it_once(backend: Backend) -> None:
    store = backend.open().sync
    store.join("room", "gone", ttl=backend.short_ttl, user="ann", info=[1])
    store.join("room", "stays", ttl=LONG)
    store.join("other", "gone", ttl=backend.short_ttl)
    [member] = [m for m in store.members("room") if m.client == "gone"]

    backend.pass_time(backend.short_ttl)
    assert clients(store.members("room")) == ["stays"]  # never lists an expired member
    assert store.expire("room") == [member]
    assert store.expire("room") == []
    assert clients(store.members("room")) == ["stays"]
    # Each channel is swept on its own.
    assert clients(store.expire("other")) == ["gone"]


def test_an_expired_member_is_not_touched_nor_left(backend: Backend) -> None:
    store = backend.open().sync
    store.join("room", "c1", ttl=backend.short_ttl)
    [member] = store.members("room")
    backend.pass_time(backend.short_ttl)

    assert store.touch("room", "c1", ttl=LONG) is False
    assert store.leave("room", "c1") is None
    # Neither changed anything: its leave is still expire()'s to report, with its old expiry.
    assert store.expire("room") == [member]


def test_joining_again_after_expiry_is_a_new_join(backend: Backend) -> None:
    store = backend.open().sync
    store.join("room", "c1", ttl=backend.short_ttl, user="old")
    [first] = store.members("room")
    backend.pass_time(backend.short_ttl)

    assert store.join("room", "c1", ttl=LONG, user="new") is True
    [member] = store.members("room")
    assert member.user == "new"
    assert member.joined > first.joined
    assert store.expire("room") == []  # replaced, so nothing is left to expire


def test_expire_orders_by_joined_time(backend: Backend) -> None:
    store = backend.open().sync
    for client in ("zed", "amy", "kim"):
        store.join("room", client, ttl=backend.short_ttl)
        backend.pass_time(0.01)
    backend.pass_time(backend.short_ttl)
    assert clients(store.expire("room")) == ["zed", "amy", "kim"]


# -- the two faces -------------------------------------------------------------------------------


async def test_the_async_face_is_the_same_store(backend: Backend) -> None:
    store = backend.open()
    assert await store.join("room", "a", ttl=LONG, user="ann") is True
    assert store.sync.join("room", "b", ttl=backend.short_ttl) is True
    assert await store.join("room", "a", ttl=LONG, user="ann") is False
    assert clients(await store.members("room")) == ["a", "b"]
    assert await store.touch("room", "a", ttl=LONG) is True
    assert await store.touch("room", "nobody", ttl=LONG) is False

    await asyncio.to_thread(backend.pass_time, backend.short_ttl)
    assert clients(await store.expire("room")) == ["b"]
    left = await store.leave("room", "a")
    assert left is not None
    assert (left.client, left.user) == ("a", "ann")
    assert await store.leave("room", "a") is None
    assert store.sync.members("room") == []


async def test_a_closed_store_raises_unavailable(backend: Backend) -> None:
    store = backend.open()
    store.sync.join("room", "c1", ttl=LONG)
    async with store:
        pass
    with pytest.raises(PresenceUnavailableError, match="closed"):
        store.sync.members("room")
    with pytest.raises(PresenceUnavailableError, match="closed"):
        await store.join("room", "c2", ttl=LONG)


# -- bad input ----------------------------------------------------------------------------------


class Unserialisable:
    pass


circular: list[Any] = []
circular.append(circular)

BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("join", {"channel": ""}, ValueError, "channel"),
    ("join", {"channel": b"room"}, TypeError, "channel"),
    ("join", {"channel": "\ud800"}, ValueError, "channel"),
    ("join", {"client": ""}, ValueError, "client"),
    ("join", {"client": 42}, TypeError, "client"),
    ("join", {"client": "\udfff"}, ValueError, "client"),
    ("join", {"ttl": 0}, ValueError, "ttl"),
    ("join", {"ttl": -1.0}, ValueError, "ttl"),
    ("join", {"ttl": math.inf}, ValueError, "ttl"),
    ("join", {"ttl": math.nan}, ValueError, "ttl"),
    ("join", {"ttl": "30"}, TypeError, "ttl"),
    ("join", {"ttl": True}, TypeError, "ttl"),
    ("join", {"user": 7}, TypeError, "user"),
    ("join", {"user": "\ud800"}, ValueError, "user"),
    ("join", {"info": Unserialisable()}, TypeError, "info"),
    ("join", {"info": {"bytes": b"x"}}, TypeError, "info"),
    ("join", {"info": {"n": math.nan}}, ValueError, "info"),
    ("join", {"info": circular}, ValueError, "info"),
    ("touch", {"channel": ""}, ValueError, "channel"),
    ("touch", {"client": None}, TypeError, "client"),
    ("touch", {"ttl": 0}, ValueError, "ttl"),
    ("leave", {"channel": None}, TypeError, "channel"),
    ("leave", {"client": ""}, ValueError, "client"),
    ("members", {"channel": ""}, ValueError, "channel"),
    ("expire", {"channel": 1}, TypeError, "channel"),
]
GOOD_ARGS: dict[str, dict[str, Any]] = {
    "join": {"channel": "room", "client": "c1", "ttl": LONG, "user": "ann", "info": None},
    "touch": {"channel": "room", "client": "c1", "ttl": LONG},
    "leave": {"channel": "room", "client": "c1"},
    "members": {"channel": "room"},
    "expire": {"channel": "room"},
}


@pytest.mark.parametrize(
    ("method", "bad", "error", "field"),
    BAD_CALLS,
    ids=[f"{method}-{next(iter(bad))}-{n}" for n, (method, bad, _, _) in enumerate(BAD_CALLS)],
)
async def test_bad_input_is_refused_on_both_faces_and_changes_nothing(
    backend: Backend, method: str, bad: dict[str, Any], error: type[Exception], field: str
) -> None:
    store = backend.open()
    store.sync.join("room", "c1", ttl=LONG, user="ann")
    before = store.sync.members("room")
    kwargs = {**GOOD_ARGS[method], **bad}
    with pytest.raises(error, match=field):
        getattr(store.sync, method)(**kwargs)
    with pytest.raises(error, match=field):
        await getattr(store, method)(**kwargs)
    assert store.sync.members("room") == before
