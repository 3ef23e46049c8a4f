import json

import pytest
from cryptography.fernet import Fernet

from connectors import crypto
from tests.factories import IdentitySourceFactory

SECRET = {"client_id": "abc", "client_secret": "s3cr3t-value-never-in-clear"}


@pytest.mark.django_db
def test_credentials_round_trip_and_are_not_stored_in_clear():
    source = IdentitySourceFactory()
    source.set_credentials(SECRET)
    source.save()
    source.refresh_from_db()
    assert source.credentials == SECRET
    assert "s3cr3t" not in source.credentials_encrypted
    assert "client_secret" not in source.credentials_encrypted


def test_rotation_new_key_first_old_keys_still_decrypt(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.LANYARD_ENCRYPTION_KEYS = [old]
    token = crypto.encrypt_json(SECRET)

    settings.LANYARD_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt_json(token) == SECRET
    rotated = crypto.rotate(token)
    assert rotated != token

    settings.LANYARD_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt_json(rotated) == SECRET
    with pytest.raises(crypto.DecryptionError, match="LANYARD_ENCRYPTION_KEYS"):
        crypto.decrypt_json(token)


def test_a_tampered_value_is_refused(settings):
    token = crypto.encrypt_json(SECRET)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt_json(tampered)


def test_fingerprint_is_sha256_hex():
    value = crypto.fingerprint("ghp_exampletokenmaterial")
    assert len(value) == 64 and int(value, 16) >= 0
    assert "ghp_" not in json.dumps(value)
