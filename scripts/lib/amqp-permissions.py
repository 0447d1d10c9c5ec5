#!/usr/bin/python3
"""What one RabbitMQ account may do, tried over AMQP with pika (Debian's
python3-pika), for the three-host test. Usage:

    amqp-permissions.py HOST PORT VHOST ACTION
    (user and password in AMQP_USER / AMQP_PASSWORD: never on the command line)

ACTION: login (connect and close), consume | get | purge (billing_queue),
publish (to billing_queue through the default exchange, with confirms),
publish-poison (a body that is no order), declare (the topology of
srcs/common/src/topology.rs), declare-other (a queue outside that topology).
Prints "allowed" or "refused <code> <text>" and exits 0 for allowed, 3 for
refused by the broker, 1 for anything else (cannot connect, ...).
"""
import os
import sys

import pika
import pika.exceptions

BILLING_QUEUE = "billing_queue"
DLX = "billing_queue.dlx"
DLQ = "billing_queue.dlq"


def declare(ch):
    # Exactly the declarations of topology::declare (same arguments).
    ch.exchange_declare(DLX, exchange_type="fanout", durable=True)
    ch.queue_declare(DLQ, durable=True, arguments={"x-queue-type": "classic"})
    ch.queue_bind(DLQ, DLX, routing_key="")
    ch.queue_declare(
        BILLING_QUEUE,
        durable=True,
        arguments={"x-queue-type": "classic", "x-dead-letter-exchange": DLX},
    )


def main():
    host, port, vhost, action = sys.argv[1:5]
    params = pika.ConnectionParameters(
        host=host,
        port=int(port),
        virtual_host=vhost,
        credentials=pika.PlainCredentials(os.environ["AMQP_USER"], os.environ["AMQP_PASSWORD"]),
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=10,
    )
    try:
        conn = pika.BlockingConnection(params)
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.ProbableAccessDeniedError,
            pika.exceptions.AuthenticationError, pika.exceptions.ConnectionClosedByBroker) as e:
        # The broker refused the login (e.g. an account that is loopback-only).
        print(f"refused login {e!r}")
        return 3
    ch = conn.channel()
    try:
        if action == "login":
            pass
        elif action == "declare":
            declare(ch)
        elif action == "declare-other":
            ch.queue_declare("mp-test-other", durable=False, auto_delete=True)
        elif action == "consume":
            ch.basic_consume(BILLING_QUEUE, lambda *a: None, auto_ack=False)
        elif action == "get":
            ch.basic_get(BILLING_QUEUE, auto_ack=False)
        elif action == "purge":
            ch.queue_purge(BILLING_QUEUE)
        elif action in ("publish", "publish-poison"):
            ch.confirm_delivery()
            body = b"not an order" if action == "publish-poison" else b'{"forged":true}'
            ch.basic_publish("", BILLING_QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        else:
            print(f"unknown action {action}", file=sys.stderr)
            return 1
    except pika.exceptions.ChannelClosedByBroker as e:
        print(f"refused {e.reply_code} {e.reply_text}")
        return 3
    print("allowed")
    try:
        # Leave nothing held: a consumer or unacked get would keep a message.
        conn.close()
    except pika.exceptions.AMQPError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
