"""Department scope computed in SQL (visible_clause) is the same set as in Python."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import Department, Role
from fleet.scope import visible_clause, visible_departments
from tests import factories as f


def test_visible_clause_is_the_department_subtree(db: Session) -> None:
    bureau = f.department(db, name="局")
    a = f.department(db, bureau, "处A")
    a1 = f.department(db, a, "科A1")
    a11 = f.department(db, a1, "组A11")
    b = f.department(db, bureau, "处B")
    for dep in (bureau, a, a1, a11, b):
        for role in (Role.staff, Role.approver, Role.dispatcher, Role.supervisor):
            actor = f.user(db, role, dep)
            clause = visible_clause(actor, Department.id)
            expected = visible_departments(db, actor)
            if expected is None:
                assert clause is None
                continue
            assert clause is not None
            got = set(db.scalars(select(Department.id).where(clause)))
            assert got == expected
    assert set(db.scalars(select(Department.id).where(
        visible_clause(f.user(db, Role.staff, a), Department.id)))) == {a.id, a1.id, a11.id}
