"""Celery routing: one queue per kind of work, each with its own routing key."""

from lanyard.celery import app


def test_each_queue_has_its_own_routing_key_so_a_message_lands_in_one_queue():
    keys = {q.name: q.routing_key for q in app.amqp.queues.values()}
    assert keys == {"default": "default", "sync": "sync", "revoke": "revoke", "mail": "mail"}
    for task, queue in [
        ("connectors.sync_source", "sync"),
        ("connectors.revoke_grant_at_idp", "revoke"),
        ("governance.send_email", "mail"),
        ("lanyard.heartbeat", "default"),
    ]:
        route = app.amqp.router.route({}, task)
        assert (route["queue"].name, route["queue"].routing_key) == (queue, queue)
