from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "access"
    verbose_name = "Access decisions"

    def ready(self) -> None:
        from . import recording

        recording.install_exit_flush()
