"""Operation and main table of a SQL statement, for metric labels and span names.

Statements come from SQLAlchemy with bound parameters (`%(name)s` placeholders), so the text never carries user
values; the set of distinct statements is small, hence the cache.
"""

from __future__ import annotations

import re
from functools import lru_cache

NO_TABLE = "none"
OTHER_OPERATION = "OTHER"
OPERATIONS = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "SET",
        "SHOW",
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "COPY",
        "LOCK",
        "EXPLAIN",
        "LISTEN",
        "NOTIFY",
    }
)

_LEADING_COMMENTS = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_IDENTIFIER = r'(?:"[^"]{1,63}"|[A-Za-z_][A-Za-z0-9_$]{0,62})'
_TABLE_AFTER = {
    "SELECT": re.compile(r"\bFROM\s+(?:ONLY\s+)?(" + _IDENTIFIER + r"(?:\." + _IDENTIFIER + r")?)", re.I),
    "INSERT": re.compile(r"\bINTO\s+(" + _IDENTIFIER + r"(?:\." + _IDENTIFIER + r")?)", re.I),
    "UPDATE": re.compile(r"\bUPDATE\s+(?:ONLY\s+)?(" + _IDENTIFIER + r"(?:\." + _IDENTIFIER + r")?)", re.I),
    "DELETE": re.compile(r"\bFROM\s+(?:ONLY\s+)?(" + _IDENTIFIER + r"(?:\." + _IDENTIFIER + r")?)", re.I),
    "TRUNCATE": re.compile(r"\bTRUNCATE\s+(?:TABLE\s+)?(" + _IDENTIFIER + r"(?:\." + _IDENTIFIER + r")?)", re.I),
}
_CTE_VERB = re.compile(r"\)\s*(SELECT|INSERT|UPDATE|DELETE)\b", re.I)
_SQL_KEYWORDS = frozenset({"SELECT", "LATERAL", "VALUES"})


@lru_cache(maxsize=1024)
def classify(statement: str) -> tuple[str, str]:
    """(operation, table): e.g. ("SELECT", "orders"); table is "none" when there is none."""
    body = _LEADING_COMMENTS.sub("", statement, count=1)
    first = _FIRST_WORD.match(body)
    operation = first.group(0).upper() if first else OTHER_OPERATION
    if operation == "WITH":
        # A CTE: the main statement follows the last closing parenthesis of the WITH list.
        verbs = _CTE_VERB.findall(body)
        operation = verbs[-1].upper() if verbs else "SELECT"
    if operation not in OPERATIONS:
        return OTHER_OPERATION, NO_TABLE
    pattern = _TABLE_AFTER.get(operation)
    if pattern is None:
        return operation, NO_TABLE
    for match in pattern.finditer(body):
        table = match.group(1).replace('"', "")
        if table.upper() not in _SQL_KEYWORDS:
            return operation, table
    return operation, NO_TABLE
