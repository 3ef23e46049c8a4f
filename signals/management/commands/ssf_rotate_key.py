"""``manage.py ssf_rotate_key``: a new SET signing key, active at once; the old ones stay published."""

from django.conf import settings
from django.core.management.base import BaseCommand

from signals.keys import key_rotate, published


class Command(BaseCommand):
    help = "Create a new active SET signing key; retired keys stay in the JWKS for the retention period."

    def handle(self, *args, **options) -> None:
        key = key_rotate(actor="manage.py ssf_rotate_key")
        kids = [k.kid for k in published()]
        self.stdout.write(
            f"New signing key {key.kid} ({key.alg}) is active. Published: {', '.join(kids)} "
            f"(retired keys for {settings.LANYARD_SSF_KEY_RETENTION_HOURS:g} h)."
        )
