"""Auditing an erasure: is anything of the user left, in the store or in any file?

``audit_user`` checks, for one user id: no record under the user's key, no data
key in the keystore, the shared statistics equal the sum of the ledgers of the
users that exist (so no contribution of a user who is gone is left), and a byte
scan of every file under the data directory for the raw user id and any other
terms given (e.g. the user's queries). Free LMDB pages keep old bytes until
they are reused or the store is compacted (``ownrank compact``): the scan shows
whether that matters for this user. A short term also turns up by chance in
random-looking bytes (sealed records, keys): the report says how often that is
expected for each term (``chance_matches``), so a finding can be judged.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .co_counts import CO, expected_row_sums
from .record_cipher import RecordUnreadable

if TYPE_CHECKING:
    from .users import Users


@dataclass(frozen=True)
class Finding:
    term: str
    path: str
    offset: int
    # the term is also catalog text (an item's id, title, body, tags or properties):
    # a match of it in the store's files says nothing about the user, so it does not
    # make the audit unclean; it is still listed, with the reason
    catalog_text: bool = False


@dataclass(frozen=True)
class AuditReport:
    user_key: str
    record_present: bool
    data_key_present: bool
    ledger_entries: int
    shared_statistics_consistent: bool
    tombstone_erased_at: int | None
    files_scanned: int
    bytes_scanned: int
    findings: list[Finding] = field(default_factory=list)
    # per term: how many matches ``bytes_scanned`` bytes of random data would hold by
    # chance (``chance_matches``); sealed records, keys and hashes look random, so a
    # short term is found in them now and then without anything of the user being there
    chance_matches: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return (
            not self.record_present
            and not self.data_key_present
            and self.ledger_entries == 0
            and self.shared_statistics_consistent
            and not any(not f.catalog_text for f in self.findings)
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clean": self.clean}


def scan_files(root: Path, terms: Mapping[str, bytes]) -> tuple[list[Finding], int, int]:
    """Every occurrence of each term in every regular file under ``root``; returns
    (findings, files scanned, bytes scanned)."""
    findings: list[Finding] = []
    files = scanned = 0
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        size = path.stat().st_size
        files += 1
        scanned += size
        if size == 0:
            continue
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for name, needle in terms.items():
                if not needle:
                    continue
                at = data.find(needle)
                while at != -1:
                    findings.append(Finding(name, str(path), at))
                    at = data.find(needle, at + 1)
    return findings, files, scanned


def chance_matches(needle: bytes, scanned: int) -> float:
    """How many times ``needle`` turns up by chance in ``scanned`` random bytes (one
    chance in 256^len at each offset): near 0 for a user id of 8 bytes or more, but
    a 3-byte id is expected about once in 17 MB of sealed records.

    >>> round(chance_matches(b"ann", 50 * 2**20), 2)
    3.12
    >>> chance_matches(b"reader-0042", 50 * 2**20) < 1e-18
    True
    >>> chance_matches(b"x" * 1000, 50 * 2**20)  # (256^1000 is past any float)
    0.0
    """
    if not needle:
        return 0.0
    return math.ldexp(max(scanned - len(needle) + 1, 0), -8 * len(needle))


def shared_statistics_consistent(users: Users) -> bool:
    """Shared counts == the sum of the ledgers of the readable records."""
    records = users.records
    expected: dict[str, int] = {}
    contributing = 0
    sets: list[list[str]] = []
    with users.env.read() as txn:
        for key, raw in records.scan(txn):
            try:
                record = records.decode(key, raw)[0]
            except RecordUnreadable:
                return False  # an orphan whose contribution cannot be accounted for
            items = record.ledger.get("pop", []) if record else []
            contributing += bool(items)
            for item_id in items:
                expected[item_id] = expected.get(item_id, 0) + 1
            if record and record.ledger.get(CO):
                sets.append(record.ledger[CO])
        return (
            users.shared.totals(txn) == expected
            and users.shared.users(txn) == contributing
            # each row's degree and count total (every pair is checked in the tests;
            # decoding every pair of a big store here would cost gigabytes)
            and users.shared.co.row_sums(txn) == expected_row_sums(sets)
        )


def audit_user(
    users: Users, data_dir: Path, user_id: str, terms: Mapping[str, bytes] | None = None
) -> AuditReport:
    """The audit of one user over a store's user side and every file under ``data_dir``."""
    key = users.key(user_id)
    with users.env.read() as txn:
        raw = users.records.raw(txn, key)
        record = users.records.get(txn, key)
        erased_at = users.erasures.tombstone(txn, key, users.clock())
    needles = {"user id": user_id.encode(), **(terms or {})}
    findings, files, scanned = scan_files(data_dir, needles)
    with users.env.read() as txn:
        catalog = {
            name
            for name, needle in needles.items()
            if needle and users.catalog.store.holds_text(txn, needle)
        }
    findings = [Finding(f.term, f.path, f.offset, catalog_text=f.term in catalog) for f in findings]
    return AuditReport(
        user_key=key.hex(),
        record_present=raw is not None,
        data_key_present=users.keystore.wrapped(key) is not None,
        ledger_entries=sum(len(v) for v in record.ledger.values()) if record else 0,
        shared_statistics_consistent=shared_statistics_consistent(users),
        tombstone_erased_at=erased_at,
        files_scanned=files,
        bytes_scanned=scanned,
        findings=findings,
        chance_matches={name: chance_matches(n, scanned) for name, n in needles.items()},
    )
