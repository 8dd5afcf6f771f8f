"""Case ids: `backend@device::operator::case::dtype`, the key of a case in plan.json, results.jsonl, pytest
node ids and every diff. Built and taken apart here only."""

from __future__ import annotations

from dataclasses import dataclass

SEP = "::"


@dataclass(frozen=True)
class CaseId:
    cell: str
    op: str
    case: str
    dtype: str

    def __str__(self) -> str:
        return SEP.join((self.cell, self.op, self.case, self.dtype))

    @property
    def backend(self) -> str:
        return self.cell.partition("@")[0]

    @property
    def device(self) -> str:
        return self.cell.partition("@")[2]

    @property
    def key(self) -> str:
        """The id without its cell: the same key names the same case in every cell."""
        return SEP.join((self.op, self.case, self.dtype))

    @classmethod
    def parse(cls, text: str) -> CaseId:
        """Parse an id; missing trailing parts are empty (a pytest node id of a worker that died early)."""
        cell, op, case, dtype = ([*text.split(SEP, 3), "", "", ""])[:4]
        return cls(cell, op, case, dtype)


def case_key(row_id: str, cell: str) -> str:
    """`row_id` without the `cell` prefix (ids of other kinds of rows are returned whole)."""
    prefix = cell + SEP
    return row_id[len(prefix) :] if row_id.startswith(prefix) else row_id


def strip_pytest_file(nodeid: str) -> str:
    """The case id inside a pytest node id (`<plan file>::<case id>`)."""
    return nodeid.split(SEP, 1)[-1]
