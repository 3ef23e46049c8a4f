from django.urls import path

from . import stream_api, views

app_name = "signals"

urlpatterns = [
    # Receiver: RFC 8935 push delivery of SETs from the IdPs.
    path("receive/<uuid:stream_id>", views.receive_push, name="receive"),
    # Transmitter: Lanyard's JWKS, SSF 1.0 stream management and RFC 8936 poll delivery.
    path("jwks.json", stream_api.jwks, name="jwks"),
    path("streams", stream_api.stream_collection, name="streams"),
    path("streams/status", stream_api.stream_status, name="status"),
    path("streams/subjects:add", stream_api.subjects_add, name="subjects_add"),
    path("streams/subjects:remove", stream_api.subjects_remove, name="subjects_remove"),
    path("streams/verify", stream_api.verify, name="verify"),
    path("poll/<uuid:stream_id>", stream_api.poll, name="poll"),
]
