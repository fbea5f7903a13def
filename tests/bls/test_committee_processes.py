"""Members as separate processes, an aggregator, and the registry on Anvil: a certificate only
for what ≥ k members' own views reproduce; equivocation caught with evidence (THREATS G06)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import assert_revert

from offchain.committee import bls
from offchain.committee.aggregator import Aggregator, Signer
from offchain.committee.bls import SecretKey
from offchain.committee.member import Member, MemberProcess, serve
from offchain.committee.registry import Certificate, Registry
from offchain.errors import ContractRevert, QuorumNotReached, SigningRefused

SEQUENCE = 7
AGREED = b"\xaa" * 32
OTHER = b"\xbb" * 32


@pytest.fixture
def views(tmp_path: Path) -> list[Path]:
    """Each member's view: what it reproduces for each sequence (all agree on AGREED)."""
    paths = []
    for i in range(4):
        path = tmp_path / f"view{i}.json"
        path.write_text(json.dumps({str(SEQUENCE): "0x" + AGREED.hex()}))
        paths.append(path)
    return paths


@pytest.fixture
def processes(committee_keys: list[SecretKey], views: list[Path]) -> Iterator[list[MemberProcess]]:
    members = [MemberProcess(key, view) for key, view in zip(committee_keys, views, strict=True)]
    yield members
    for m in members:
        m.close()


class Equivocator:
    """A byzantine member: signs whatever it is asked, for any sequence."""

    def __init__(self, key: SecretKey) -> None:
        self._key = key

    def sign(self, sequence: int, message: bytes) -> bytes:
        return self._key.sign(message)


def test_processes__k_members_certify__registry_verifies(
    registry: Registry, processes: list[MemberProcess], views: list[Path]
) -> None:
    # Member 3's view disagrees: it refuses, and the other three still make the quorum.
    views[3].write_text(json.dumps({str(SEQUENCE): "0x" + OTHER.hex()}))
    assert [p.public_key for p in processes] == registry.public_keys()
    aggregator = Aggregator(registry.public_keys(), registry.threshold())
    cert = aggregator.certify(SEQUENCE, AGREED, dict(enumerate(processes)))
    assert cert.signers == [0, 1, 2]
    assert registry.verify(cert) == registry.key_epoch()


def test_processes__fewer_than_k_reproduce__nothing_certified(
    registry: Registry, processes: list[MemberProcess], views: list[Path]
) -> None:
    """G06: two of four views agree, k = 3: no certificate, and one built from the two partials
    anyway is refused on-chain."""
    for view in views[2:]:
        view.write_text("{}")
    aggregator = Aggregator(registry.public_keys(), registry.threshold())
    with pytest.raises(QuorumNotReached) as e:
        aggregator.certify(SEQUENCE, AGREED, dict(enumerate(processes)))
    assert (e.value.valid, e.value.threshold) == (2, 3)
    assert set(e.value.refusals) == {2, 3}
    partial = bls.aggregate_signatures([processes[i].sign(SEQUENCE, AGREED) for i in (0, 1)])
    with pytest.raises(ContractRevert) as reverted:
        registry.verify(Certificate(AGREED, 0b11, partial))
    assert_revert(reverted.value, "TooFewSigners", signers=2, threshold=3)


def test_processes__honest_member_never_signs_two_messages_for_one_sequence(
    processes: list[MemberProcess], views: list[Path]
) -> None:
    processes[0].sign(SEQUENCE, AGREED)
    assert processes[0].sign(SEQUENCE, AGREED)  # the same message again is fine
    views[0].write_text(json.dumps({str(SEQUENCE): "0x" + OTHER.hex()}))  # its view moves on
    with pytest.raises(SigningRefused, match="already signed"):
        processes[0].sign(SEQUENCE, OTHER)


def test_equivocation__detected_with_evidence_and_excluded(
    registry: Registry, committee_keys: list[SecretKey], processes: list[MemberProcess]
) -> None:
    """G06: member 3 signs AGREED, then OTHER for the same sequence. The aggregator keeps both
    signatures as evidence anyone can check against its registered key, drops member 3 from
    the sequence, and the honest members refuse OTHER: no certificate for it."""
    members: dict[int, Signer] = {
        **dict(enumerate(processes[:3])),
        3: Equivocator(committee_keys[3]),
    }
    aggregator = Aggregator(registry.public_keys(), registry.threshold())
    first = aggregator.certify(SEQUENCE, AGREED, members)
    assert first.signers == [0, 1, 2, 3]
    with pytest.raises(QuorumNotReached) as e:
        aggregator.certify(SEQUENCE, OTHER, members)
    assert e.value.refusals[3] == "equivocated on this sequence"
    (evidence,) = aggregator.equivocations
    assert (evidence.member, evidence.sequence) == (3, SEQUENCE)
    assert evidence.holds(committee_keys[3].public_key())
    assert not evidence.holds(committee_keys[0].public_key())
    assert registry.verify(first)  # what was certified before the equivocation still stands


def test_aggregator__invalid_partial_is_refused(committee_keys: list[SecretKey]) -> None:
    class WrongKey:
        def sign(self, sequence: int, message: bytes) -> bytes:
            return committee_keys[0].sign(message)  # not member 1's key

    keys = [k.public_key() for k in committee_keys]
    members: dict[int, Signer] = {0: Equivocator(committee_keys[0]), 1: WrongKey()}
    with pytest.raises(QuorumNotReached) as e:
        Aggregator(keys, 2).certify(SEQUENCE, AGREED, members)
    assert e.value.refusals == {1: "invalid partial signature"}


def test_serve__protocol_errors_are_replies_not_crashes(committee_keys: list[SecretKey]) -> None:
    member = Member(committee_keys[0], lambda seq, msg: True)
    requests = [
        '{"method": "sign", "sequence": 1, "message": "0x1234"}',
        '{"method": "nope"}',
        "not json",
        '{"method": "public_key"}',
    ]
    out = io.StringIO()
    serve(member, io.StringIO("\n".join(requests) + "\n"), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert "32 bytes" in replies[0]["error"]
    assert "unknown method" in replies[1]["error"]
    assert "malformed" in replies[2]["error"]
    assert replies[3]["result"] == "0x" + committee_keys[0].public_key().hex()


def test_aggregator__prefers_a_cached_signer_set(
    registry: Registry, committee_keys: list[SecretKey], committee_owner: str
) -> None:
    registry.cache_signer_set(0b1011, committee_owner)
    members: dict[int, Signer] = {i: Equivocator(k) for i, k in enumerate(committee_keys)}
    aggregator = Aggregator(registry.public_keys(), registry.threshold())
    cert = aggregator.certify(SEQUENCE, AGREED, members, registry.cached_signer_sets())
    assert cert.signers == [0, 1, 3]
    assert registry.verify(cert) == registry.key_epoch()
