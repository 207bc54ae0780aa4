"""Access tokens: a token verified once is remembered, yet expires on time; forgeries fail."""

from __future__ import annotations

import time

import jwt
import pytest

from fleet.errors import Unauthorized
from fleet.security import ALGORITHM, create_token, decode_token

SECRET = "token-test-secret-0123456789-abcdefghijkl"


def test_a_remembered_token_still_expires_on_time() -> None:
    exp = int(time.time()) + 2
    token = jwt.encode({"sub": "7", "exp": exp}, SECRET, algorithm=ALGORITHM)
    assert decode_token(token, SECRET)["sub"] == "7"
    assert decode_token(token, SECRET)["sub"] == "7"  # the second time from memory
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(token, SECRET)


def test_forged_and_foreign_tokens_fail_however_often_a_good_one_was_seen() -> None:
    token = create_token("7", SECRET, 5)
    decode_token(token, SECRET)
    head, body, sig = token.split(".")
    forged = jwt.encode({"sub": "1", "exp": int(time.time()) + 300},
                        "another-secret-key-000000000000000", algorithm=ALGORITHM)
    tampered = ("B" if sig[0] == "A" else "A") + sig[1:]  # the first character: all data bits
    for bad in (f"{head}.{body}.{tampered}", forged, "not-a-token", f"{head}..{sig}"):
        with pytest.raises(Unauthorized, match="invalid"):
            decode_token(bad, SECRET)
    with pytest.raises(Unauthorized, match="invalid"):
        decode_token(token, "a-different-secret-0123456789-abcdefgh")
    with pytest.raises(Unauthorized, match="invalid"):  # no expiry at all
        decode_token(jwt.encode({"sub": "7"}, SECRET, algorithm=ALGORITHM), SECRET)
