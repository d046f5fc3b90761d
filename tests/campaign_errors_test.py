"""How the operator's campaign classifies ledger failures: by typed fields, the chaincode's status parsed once
(fedchain.gateway.errors), never by searching an error's text."""

from __future__ import annotations

import pytest
from fedchain.campaign import ledger as campaign_ledger
from fedchain.campaign.ledger import OperatorLedger, retry_mvcc
from fedchain.gateway.errors import CommitError, EndorseError
from fedchain.gateway.status import ErrorDetail
from fedchain.records import RoundId


def refused(status: int, message: str) -> EndorseError:
    return EndorseError("endorse failed", details=[
        ErrorDetail("peer0.org1", "Org1MSP", f"chaincode response {status}, {message}")])


def test_retry_mvcc_retries_only_an_mvcc_invalidation(monkeypatch):
    monkeypatch.setattr(campaign_ledger.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise CommitError("a" * 64, 11, 7)  # 11 = MVCC_READ_CONFLICT
    retry_mvcc(flaky)
    assert len(calls) == 3

    tries = []

    def mentions_mvcc():
        tries.append(1)
        raise EndorseError("endorse failed: the text says MVCC_READ_CONFLICT but nothing was invalidated")
    with pytest.raises(EndorseError):
        retry_mvcc(mentions_mvcc)
    assert len(tries) == 1, "a failure that only mentions MVCC in its text was retried"


def test_published_is_false_only_on_the_contracts_404():
    def not_yet(rid):
        raise refused(404, "GetReference: no reference published for round 3")

    def forbidden(rid):
        raise refused(403, "GetReference: caller is not a participant")

    assert OperatorLedger._published(lambda rid: b"x", RoundId(3)) is True
    assert OperatorLedger._published(not_yet, RoundId(3)) is False
    with pytest.raises(EndorseError):
        OperatorLedger._published(forbidden, RoundId(3))
