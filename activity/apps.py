from django.apps import AppConfig


class ActivityConfig(AppConfig):
    name = "activity"
    verbose_name = "AI activity"

    def ready(self) -> None:
        from connectors.signals import stale_check_starting

        from .usage import on_stale_check_starting

        stale_check_starting.connect(on_stale_check_starting, dispatch_uid="activity.usage_rollup")
