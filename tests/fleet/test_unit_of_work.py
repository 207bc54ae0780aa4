"""The request's transaction is committed before its answer is sent (read-your-writes)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from fleet.models import Role
from tests import factories as f


def test_commit_happens_before_the_answer_is_sent(app: Any, db: Session) -> None:
    bureau = f.department(db, name="局")
    admin = f.user(db, Role.admin, bureau)
    db.commit()
    order: list[str] = []
    event.listen(app.state.sessionmaker, "after_commit", lambda _s: order.append("commit"))

    async def watched(scope: Any, receive: Any, send: Any) -> None:
        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                order.append(f"answer {message['status']}")
            await send(message)

        await app(scope, receive, record)

    with TestClient(watched) as c:
        h = f.login(c, admin).headers
        order.clear()
        r = c.post("/api/departments", json={"code": "uow1", "name": "新处"}, headers=h)
        assert r.status_code == 201, r.text
    assert order == ["commit", "answer 201"], order
