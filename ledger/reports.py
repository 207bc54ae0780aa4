"""The monthly 三公经费 report — 公务用车购置及运行维护费 — as an Excel workbook.

Every figure is a sum of ledger entries (corrections included), so the workbook ties to the
ledger: :func:`sangong_data` is what the test compares with direct ledger sums.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import Department, User
from ledger import costs, service
from ledger.models import COST_ZH, RUNNING_CATEGORIES, CostCategory

SHEET = "公务用车购置及运行维护费"
COLUMNS = [CostCategory.purchase, *RUNNING_CATEGORIES]


@dataclass(slots=True)
class ReportRow:
    department_id: int | None
    department: str
    amounts: dict[str, int]  # category → fen

    @property
    def running_fen(self) -> int:
        return sum(self.amounts.get(c, 0) for c in RUNNING_CATEGORIES)

    @property
    def total_fen(self) -> int:
        return self.running_fen + self.amounts.get(CostCategory.purchase, 0)


@dataclass(slots=True)
class SangongReport:
    period: str
    rows: list[ReportRow]

    def total(self, category: str | None = None) -> int:
        if category is None:
            return sum(r.total_fen for r in self.rows)
        return sum(r.amounts.get(category, 0) for r in self.rows)


def sangong_data(db: Session, actor: User | None, period: str) -> SangongReport:
    service.require_finance_reader(actor, "read the 三公经费 report")
    names = dict(db.execute(select(Department.id, Department.name)).all())
    rows = []
    for r in costs.rollup(db, actor, period):
        amounts = {c: r.by_category.get(c, 0) for c in COLUMNS}
        if not any(amounts.values()):
            continue
        rows.append(ReportRow(r.department_id, names.get(r.department_id, "（未归属）"),
                              amounts))
    return SangongReport(period, rows)


def _yuan(fen: int) -> float:
    return round(fen / 100.0, 2)


def write_workbook(report: SangongReport, target: str | Path | BinaryIO | None = None) -> bytes:
    """Write the report (amounts in 元, two decimals); returns the bytes as well."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET
    ws.append([f"{report.period} 公务用车购置及运行维护费（三公经费）"])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append(["单位：元"])
    header = ["单位", "单位编号", *[COST_ZH[c] for c in COLUMNS], "运行维护费小计", "合计"]
    ws.append(header)
    for cell in ws[3]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center")
    for r in report.rows:
        ws.append([r.department, r.department_id, *[_yuan(r.amounts.get(c, 0)) for c in COLUMNS],
                   _yuan(r.running_fen), _yuan(r.total_fen)])
    ws.append(["合计", None, *[_yuan(report.total(c)) for c in COLUMNS],
               _yuan(sum(r.running_fen for r in report.rows)), _yuan(report.total())])
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    for row in ws.iter_rows(min_row=4, min_col=3):
        for cell in row:
            cell.number_format = "#,##0.00"
    ws.column_dimensions["A"].width = 24
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    if isinstance(target, str | Path):
        Path(target).write_bytes(data)
    elif target is not None:
        target.write(data)
    return data
